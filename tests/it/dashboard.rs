//! The built-in dashboard in a real browser (headless Chromium through
//! chromedriver), against a live 1+2 cluster: what a person looking at
//! `/ui/` sees as the cluster changes, without reloading the page. Each
//! state's screenshot is kept under `target/dashboard/`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::browser::Browser;
use crate::harness::{wait_until, wait_until_explained, Cluster};

const T: Duration = Duration::from_secs(60);
const TOKEN: &str = "dashboard-token-for-tests-8c1d0e2f4b6a";

/// Where the screenshots go: `target/dashboard/NAME.png`.
fn shot(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/dashboard").join(format!("{name}.png"))
}

/// What the page shows, read from its DOM: each node box's role and
/// state, the streaming arrows, the lag chart's points, the events' kinds,
/// the banners, the feed's state, and the mark set before (gone after a reload).
fn seen(b: &Browser) -> Value {
    b.eval(
        r##"return {
            nodes: Object.fromEntries([...document.querySelectorAll("#topology g.node")].map(g => [g.dataset.node, g.dataset.role + " " + g.dataset.state])),
            streaming: [...document.querySelectorAll("#topology g.edge.streaming")].map(g => g.dataset.from + ">" + g.dataset.to).sort(),
            lag_points: Number(document.getElementById("lag-seconds").dataset.points || 0),
            events: [...document.querySelectorAll("#events li")].map(li => li.dataset.kind),
            event_times: [...document.querySelectorAll("#events li")].map(li => Number(li.dataset.at)),
            event_lines: [...document.querySelectorAll("#events li")].map(li => li.textContent),
            banners: [...document.querySelectorAll("#banners [data-banner]")].map(d => d.dataset.banner),
            link: document.getElementById("link").dataset.state || "",
            actions: !document.getElementById("actions").hidden,
            mark: window.__mark === 42,
        };"##,
    )
}

fn wait_seen(b: &Browser, what: &str, limit: Duration, f: impl Fn(&Value) -> bool) {
    wait_until_explained(what, limit, || f(&seen(b)), || format!("the page shows {}", seen(b)));
}

#[test]
fn the_dashboard_follows_a_stopped_replica_an_agent_restart_and_a_switchover_live() {
    let c = Cluster::with_extra(2, "\n[api]\ntoken_file = \"secrets/api.token\"\n");
    c.write("secrets/api.token", &format!("{TOKEN}\n"));
    std::fs::set_permissions(c.path("secrets/api.token"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    c.up();
    for n in ["pg-2", "pg-3"] {
        wait_until(&format!("{n} streams"), T, || c.streaming(n));
    }
    let b = Browser::start(&c.path("chromium"));
    b.goto(&format!("http://127.0.0.1:{}/ui/", c.ports[0] + 10000));

    // Three nodes with their roles, two streaming arrows, a lag chart with data.
    wait_seen(&b, "three nodes, two arrows and lag data", T, |v| {
        v["nodes"]["pg-1"] == "primary healthy"
            && v["nodes"]["pg-2"] == "replica healthy"
            && v["nodes"]["pg-3"] == "replica healthy"
            && v["streaming"] == serde_json::json!(["pg-1>pg-2", "pg-1>pg-3"])
            && v["lag_points"].as_u64() >= Some(2)
            && v["link"] == "live"
    });
    assert!(seen(&b)["actions"].as_bool().unwrap(), "with a token file the write buttons show");
    b.eval("window.__mark = 42; return null;");
    b.screenshot(&shot("1-healthy"));

    // A stopped replica turns to the stopped state within 3 s, no reload.
    c.ok(&["down", "pg-3"]);
    let stopped = Instant::now();
    wait_seen(&b, "pg-3's box in the stopped state", Duration::from_secs(3), |v| {
        v["nodes"]["pg-3"] == "unknown stopped" || v["nodes"]["pg-3"] == "replica stopped"
    });
    let v = seen(&b);
    assert!(v["mark"].as_bool().unwrap(), "the page was not reloaded");
    assert_eq!(v["streaming"], serde_json::json!(["pg-1>pg-2"]), "{v}");
    assert!(v["events"].as_array().unwrap().contains(&"state".into()), "the stop is an event: {v}");
    eprintln!("pg-3 showed as stopped {:?} after `down`", stopped.elapsed());
    b.screenshot(&shot("2-replica-stopped"));

    // The agent goes away and comes back: the page says so, then resumes by itself.
    c.ok(&["down", "--leave-running"]);
    wait_seen(&b, "the page to notice its feed is gone", T, |v| v["link"] == "lost");
    c.up();
    wait_seen(&b, "the page to resume its feed", T, |v| v["link"] == "live" && v["nodes"]["pg-3"] == "replica healthy");
    assert!(seen(&b)["mark"].as_bool().unwrap(), "it resumed without a reload");

    // A switchover from the page's button, with the pasted token and a confirmation.
    b.type_into("#token", TOKEN);
    b.click("#token-save");
    b.eval(r#"document.getElementById("switch-to").value = "pg-2"; return null;"#);
    b.click("#switchover");
    let question = b.accept_dialog();
    assert!(question.contains("from pg-1 to pg-2"), "{question}");
    wait_seen(&b, "the topology to flip to pg-2", T, |v| {
        v["nodes"]["pg-2"] == "primary healthy"
            && v["nodes"]["pg-1"].as_str().is_some_and(|s| s.starts_with("replica"))
            && v["events"].as_array().unwrap().contains(&"switchover".into())
    });
    assert_eq!(c.nodes_writable(), ["pg-2"], "the move really happened");
    let v = seen(&b);
    assert!(v["mark"].as_bool().unwrap(), "the page was not reloaded");
    let times: Vec<f64> = v["event_times"].as_array().unwrap().iter().filter_map(|t| t.as_f64()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "events newest first: {v}");
    let lines = v["event_lines"].to_string();
    assert!(lines.contains("pg-2 is the primary now (it was pg-1)"), "{lines}");
    assert!(lines.contains("switchover complete: pg-2 is primary"), "the move's own sentence: {lines}");
    let token_kept = b.eval(r#"return [sessionStorage.getItem("pgrepl-token") !== null, localStorage.length];"#);
    assert_eq!(token_kept, serde_json::json!([true, 0]), "the token is in sessionStorage only");
    b.screenshot(&shot("3-after-switchover"));
}

#[test]
fn without_a_token_the_dashboard_is_read_only_and_sends_its_policy() {
    let c = Cluster::new(1);
    c.up();
    let api = c.ports[0] + 10000;
    let (code, page) = crate::harness::http_get(api, "/ui/").expect("the API answers");
    assert_eq!(code, 200);
    assert!(page.contains("<svg id=\"topology\""), "{page}");
    let (code, _) = crate::harness::http_get(api, "/ui/nope.js").unwrap();
    assert_eq!(code, 404);
    // Open feeds are capped (each holds a connection): past the cap a page
    // is told to close one, and the health checks still answer. (Before
    // any browser: its feed would take a place.) Ok(the feed), or what
    // came back instead.
    let open_feed = || -> Result<std::net::TcpStream, String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", api)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
        s.write_all(b"GET /ui/events HTTP/1.1\r\nHost: t\r\n\r\n").map_err(|e| e.to_string())?;
        let mut first = [0u8; 12];
        s.read_exact(&mut first).map_err(|e| e.to_string())?;
        if &first == b"HTTP/1.1 200" {
            Ok(s)
        } else {
            Err(String::from_utf8_lossy(&first).to_string())
        }
    };
    let feeds: Vec<_> = (0..64).map(|_| open_feed()).collect();
    let refused: Vec<&String> = feeds.iter().filter_map(|f| f.as_ref().err()).collect();
    assert!(refused.is_empty(), "64 feeds open: {refused:?}");
    let (code, body) = crate::harness::http_get(api, "/ui/events").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("64 dashboards are open"), "{body}");
    assert_eq!(crate::harness::http_get(api, "/health").unwrap().0, 200);
    drop(feeds);
    wait_until("a closed page's place to be given back", T, || open_feed().is_ok());

    // In a browser: no write buttons, and nothing loaded from elsewhere.
    let b = Browser::start(&c.path("chromium"));
    b.goto(&format!("http://127.0.0.1:{api}/ui/"));
    wait_seen(&b, "the page's first frame", T, |v| v["nodes"]["pg-1"] == "primary healthy");
    let v = seen(&b);
    assert!(!v["actions"].as_bool().unwrap(), "no write buttons without [api] token_file: {v}");
    // Everything the page loaded came from its own origin.
    let foreign = b.eval(
        r#"return performance.getEntriesByType("resource").filter(r => !r.name.startsWith(location.origin)).length;"#,
    );
    assert_eq!(foreign, 0, "nothing fetched from elsewhere");
    drop(b);
}
