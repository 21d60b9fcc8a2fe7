-- Applied once, at bootstrap, as the database owner.
CREATE TABLE rooms (
    id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE
);

CREATE TABLE messages (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id bigint NOT NULL REFERENCES rooms (id),
    body    text NOT NULL,
    sent_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO rooms (name) VALUES ('general');
