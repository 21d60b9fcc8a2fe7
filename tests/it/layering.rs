//! The source tree's layers, enforced: a module may import only from its
//! own layer and the layers below it, so the folders under `src/` show the
//! architecture and no import cycle can form between them.
//!
//! `domain ← config ← pg ← store ← observe ← ops ← agent ← cmd ← cli`;
//! `error` and `output` (the error type and the line printer) serve every
//! layer and import only `domain`.

use std::path::{Path, PathBuf};

/// Top-level modules in import order: each may use those before it.
const LAYERS: &[&str] = &["domain", "config", "pg", "store", "observe", "ops", "agent", "cmd", "cli"];
/// Shared by every layer.
const BASE: &[&str] = &["error", "output"];

#[test]
fn imports_run_one_way_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut problems = Vec::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).unwrap().to_path_buf();
        let top = top_module(&rel);
        if matches!(top.as_str(), "main" | "lib") {
            continue;
        }
        let own = rank(&top).unwrap_or_else(|| {
            panic!("src/{} is in no layer: put it under one of {LAYERS:?} or add it to BASE", rel.display())
        });
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, used) in crate_imports(&text) {
            let Some(theirs) = rank(&used) else {
                problems.push(format!("src/{}:{line}: crate::{used} is in no layer", rel.display()));
                continue;
            };
            if theirs > own {
                problems.push(format!(
                    "src/{}:{line}: `{top}` imports crate::{used}, a layer above it (order: {})",
                    rel.display(),
                    LAYERS.join(" < ")
                ));
            }
        }
    }
    assert!(problems.is_empty(), "imports against the layering:\n{}", problems.join("\n"));
}

#[test]
fn the_import_scanner_sees_grouped_and_inline_paths() {
    let text = "use crate::{config::Node, pg::{self, sql}};\nfn f() { crate::agent::x(); }\n// crate::cmd in a comment\nuse crate::{\n    ops::{a, b},\n    store,\n};\n";
    let found: Vec<_> = crate_imports(text).into_iter().map(|(l, m)| format!("{l}:{m}")).collect();
    assert_eq!(found, ["1:config", "1:pg", "2:agent", "4:ops", "4:store"]);
}

/// The layer index of a top-level module; base modules rank lowest.
fn rank(top: &str) -> Option<usize> {
    if BASE.contains(&top) {
        // Base modules import only domain; everything may import them.
        return Some(0);
    }
    LAYERS.iter().position(|l| *l == top)
}

/// `src/a/b.rs` → `a`; `src/a.rs` → `a`.
fn top_module(rel: &Path) -> String {
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// (line, top-level module) for each `crate::` path outside comments,
/// including each member of a `use crate::{a, b::c}` group.
fn crate_imports(text: &str) -> Vec<(usize, String)> {
    // Comments out, line breaks kept: a `use` group may span lines.
    let code: String = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let start = from + at;
        let line = code[..start].matches('\n').count() + 1;
        let rest = &code[start + "crate::".len()..];
        from = start + "crate::".len();
        if let Some(group) = rest.strip_prefix('{') {
            // Each top-level member of the group starts with a module.
            let mut depth = 0;
            let mut member = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        push(&mut out, line, &member);
                        member.clear();
                        continue;
                    }
                    _ => {}
                }
                member.push(c);
            }
            push(&mut out, line, &member);
        } else {
            push(&mut out, line, rest);
        }
    }
    out
}

/// The module a group member (`config::Node`, `pg::{self, sql}`, `pg`) starts with.
fn push(out: &mut Vec<(usize, String)>, line: usize, member: &str) {
    let word: String = member.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    if !word.is_empty() && word != "self" && !out.contains(&(line, word.clone())) {
        out.push((line, word));
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(rust_files(&p));
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
    out.sort();
    out
}
