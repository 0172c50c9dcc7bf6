//! THIRD-PARTY.md against the build: its list of crates is the one Cargo.lock
//! compiles into the binary (from `cargo metadata`), each with the licence its
//! manifest declares, every licence is one that lets an Apache-2.0 binary ship
//! it (no copyleft, none unknown), and the web-vitals version it names is the
//! one the client bundle is built from. A dependency added, dropped or bumped
//! fails here until the notice says so. THIRD-PARTY-LICENSES.md holds the
//! licence files those crates ship, kept up to date the same way:
//! `THIRD_PARTY_UPDATE=1 cargo test --test third_party` rewrites both.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::process::Command;

const NOTICE: &str = "THIRD-PARTY.md";
const MARKER: &str = "<!-- generated below: do not edit by hand -->\n";

/// Licences (SPDX ids) under which a crate can be compiled into an
/// Apache-2.0 binary with a notice. An exception (`WITH`) only adds rights.
const PERMISSIVE: &[&str] = &[
    "0BSD",
    "Apache-2.0",
    "BSD-2-Clause",
    "BSD-3-Clause",
    "BSL-1.0",
    "CC0-1.0",
    "CDLA-Permissive-2.0",
    "ISC",
    "MIT",
    "MIT-0",
    "Unicode-3.0",
    "Unicode-DFS-2016",
    "Unlicense",
    "Zlib",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

fn host_triple() -> String {
    let out = Command::new(cargo())
        .arg("-vV")
        .output()
        .expect("cargo -vV");
    let text = String::from_utf8(out.stdout).expect("cargo -vV is UTF-8");
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("cargo -vV names the host")
        .to_owned()
}

/// A package the binary is built from.
struct Shipped {
    /// Its declared licence (None: no SPDX expression).
    licence: Option<String>,
    /// Where its sources are (the unpacked crates.io package).
    dir: PathBuf,
    authors: Vec<String>,
}

/// (name, version) -> every package the binary is built from: the
/// normal-dependency closure of this package on the host, without the
/// package itself.
fn shipped_crates() -> BTreeMap<(String, String), Shipped> {
    let out = Command::new(cargo())
        .current_dir(root())
        .args(["metadata", "--format-version", "1", "--locked"])
        .args(["--filter-platform", &host_triple()])
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages: BTreeMap<&str, &serde_json::Value> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().expect("package id"), p))
        .collect();
    let nodes: BTreeMap<&str, &serde_json::Value> = meta["resolve"]["nodes"]
        .as_array()
        .expect("resolve nodes")
        .iter()
        .map(|n| (n["id"].as_str().expect("node id"), n))
        .collect();
    let top = meta["resolve"]["root"].as_str().expect("root package");
    let (mut seen, mut todo) = (BTreeSet::new(), vec![top]);
    while let Some(id) = todo.pop() {
        if !seen.insert(id) {
            continue;
        }
        for dep in nodes[id]["deps"].as_array().expect("deps") {
            let normal = dep["dep_kinds"]
                .as_array()
                .expect("dep_kinds")
                .iter()
                .any(|k| k["kind"].is_null());
            if normal {
                todo.push(dep["pkg"].as_str().expect("dep id"));
            }
        }
    }
    seen.remove(top);
    seen.into_iter()
        .map(|id| {
            let p = packages[id];
            let name = p["name"].as_str().expect("name").to_owned();
            let version = p["version"].as_str().expect("version").to_owned();
            let manifest = PathBuf::from(p["manifest_path"].as_str().expect("manifest_path"));
            let shipped = Shipped {
                licence: p["license"].as_str().map(|l| l.trim().to_owned()),
                dir: manifest.parent().expect("a crate directory").to_owned(),
                authors: p["authors"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(str::to_owned))
                    .collect(),
            };
            ((name, version), shipped)
        })
        .collect()
}

/// Whether an SPDX expression can be taken under permissive licences alone:
/// `OR` needs one side, `AND` both, `X WITH exception` is `X`; the old `/`
/// separator is `OR`.
fn permissive(expression: &str) -> bool {
    let spaced = expression
        .replace('/', " OR ")
        .replace('(', " ( ")
        .replace(')', " ) ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let mut at = 0;
    let ok = or_expr(&tokens, &mut at);
    ok == Some(true) && at == tokens.len()
}

fn or_expr(t: &[&str], at: &mut usize) -> Option<bool> {
    let mut any = and_expr(t, at)?;
    while t.get(*at) == Some(&"OR") {
        *at += 1;
        any |= and_expr(t, at)?;
    }
    Some(any)
}

fn and_expr(t: &[&str], at: &mut usize) -> Option<bool> {
    let mut all = term(t, at)?;
    while t.get(*at) == Some(&"AND") {
        *at += 1;
        all &= term(t, at)?;
    }
    Some(all)
}

fn term(t: &[&str], at: &mut usize) -> Option<bool> {
    let token = *t.get(*at)?;
    *at += 1;
    let value = if token == "(" {
        let inner = or_expr(t, at)?;
        (t.get(*at) == Some(&")")).then_some(())?;
        *at += 1;
        inner
    } else if matches!(token, ")" | "AND" | "OR" | "WITH") {
        return None;
    } else {
        PERMISSIVE.contains(&token.trim_end_matches('+'))
    };
    if t.get(*at) == Some(&"WITH") {
        *at += 2;
        (*at <= t.len()).then_some(())?;
    }
    Some(value)
}

fn table(crates: &BTreeMap<(String, String), Shipped>) -> String {
    let mut text = String::from("| crate | version | licence |\n|---|---|---|\n");
    for ((name, version), shipped) in crates {
        let licence = shipped.licence.as_deref().unwrap_or("(none declared)");
        text.push_str(&format!("| {name} | {version} | {licence} |\n"));
    }
    text
}

#[test]
fn the_notice_lists_every_crate_in_the_binary_with_its_licence() {
    let crates = shipped_crates();
    assert!(
        crates.contains_key(&("tokio".to_owned(), locked_version("tokio"))),
        "tokio is not among the {} crates found",
        crates.len()
    );
    let path = root().join(NOTICE);
    let notice = fs::read_to_string(&path).expect(NOTICE);
    let (head, listed) = notice
        .split_once(MARKER)
        .unwrap_or_else(|| panic!("{NOTICE} has no line `{}`", MARKER.trim_end()));
    let expected = table(&crates);
    if std::env::var_os("THIRD_PARTY_UPDATE").is_some() {
        fs::write(&path, format!("{head}{MARKER}\n{expected}")).expect("write the notice");
        return;
    }
    let listed = listed.trim_start_matches('\n');
    if listed != expected {
        let had: BTreeSet<&str> = listed.lines().collect();
        let has: BTreeSet<&str> = expected.lines().collect();
        panic!(
            "{NOTICE} is not the list of crates Cargo.lock builds into the binary \
             (THIRD_PARTY_UPDATE=1 cargo test --test third_party rewrites it)\n\
             missing: {:#?}\nno longer built: {:#?}",
            has.difference(&had).collect::<Vec<_>>(),
            had.difference(&has).collect::<Vec<_>>()
        );
    }
}

#[test]
fn every_crate_in_the_binary_is_under_a_permissive_licence() {
    let refused: Vec<String> = shipped_crates()
        .into_iter()
        .filter(|(_, shipped)| !shipped.licence.as_deref().is_some_and(permissive))
        .map(|((name, version), shipped)| {
            format!(
                "{name} {version}: {}",
                shipped.licence.as_deref().unwrap_or("none declared")
            )
        })
        .collect();
    assert!(
        refused.is_empty(),
        "crates whose licence is copyleft or unknown (read it, and add it to PERMISSIVE only \
         if an Apache-2.0 binary can ship it):\n  {}",
        refused.join("\n  ")
    );
}

#[test]
fn the_licence_reader_takes_what_it_should() {
    for ok in [
        "MIT",
        "MIT OR Apache-2.0",
        "MIT/Apache-2.0",
        "(MIT OR Apache-2.0) AND Unicode-3.0",
        "Apache-2.0 WITH LLVM-exception OR Apache-2.0 OR MIT",
        "MIT OR Apache-2.0 OR LGPL-2.1-or-later",
        "Apache-2.0 AND ISC",
    ] {
        assert!(permissive(ok), "{ok}");
    }
    for refused in [
        "GPL-3.0-only",
        "MPL-2.0",
        "MIT AND LGPL-2.1-or-later",
        "(MIT OR Apache-2.0) AND GPL-2.0",
        "",
        "MIT OR",
        "(MIT",
        "MIT WITH",
    ] {
        assert!(!permissive(refused), "{refused}");
    }
}

/// The one version of `name` in Cargo.lock.
fn locked_version(name: &str) -> String {
    let lock = fs::read_to_string(root().join("Cargo.lock")).expect("Cargo.lock");
    let marker = format!("name = \"{name}\"\nversion = \"");
    let at = lock.find(&marker).expect("in Cargo.lock") + marker.len();
    lock[at..].split('"').next().expect("version").to_owned()
}

#[test]
fn the_notice_names_the_web_vitals_the_client_bundles() {
    let lock: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(root().join("client-js/package-lock.json")).expect("package-lock"),
    )
    .expect("package-lock.json");
    let web_vitals = &lock["packages"]["node_modules/web-vitals"];
    let version = web_vitals["version"].as_str().expect("web-vitals locked");
    assert_eq!(web_vitals["license"], "Apache-2.0");
    let notice = fs::read_to_string(root().join(NOTICE)).expect(NOTICE);
    assert!(
        notice.contains(&format!("web-vitals](https://github.com/GoogleChrome/web-vitals) {version}")),
        "{NOTICE} does not name web-vitals {version}, the version client-js/package-lock.json bundles"
    );
    let bundle = fs::read_to_string(root().join("client-js/dist/rum.min.js")).expect("bundle");
    assert!(
        bundle
            .lines()
            .next()
            .unwrap_or("")
            .contains(&format!("web-vitals {version} (Apache-2.0")),
        "the bundle's banner does not name web-vitals {version} and its licence"
    );
    // The project's own licence text, which the notice points to.
    let licence = fs::read_to_string(root().join("LICENSE")).expect("LICENSE");
    assert!(
        licence.contains("Apache License\n                           Version 2.0, January 2004")
    );
    let manifest = fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    assert!(manifest.contains("\nlicense = \"Apache-2.0\"\n"));
}

const TEXTS: &str = "THIRD-PARTY-LICENSES.md";

/// A file of a crate's package that holds licence text.
fn is_licence_file(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "LICENSE",
        "LICENCE",
        "COPYING",
        "NOTICE",
        "COPYRIGHT",
        "UNLICENSE",
    ]
    .iter()
    .any(|p| upper.starts_with(p))
}

/// A line naming a holder (`Copyright (c) 2016 Someone`), which differs
/// between copies of one licence.
fn is_copyright_line(line: &str) -> bool {
    let l = line.trim_start().to_ascii_lowercase();
    l.starts_with("copyright") || l.starts_with("(c)") || l.starts_with('©')
}

/// A text without its copyright lines, its words only: copies of one
/// licence that differ in holders, line breaks or indentation group as one.
fn licence_key(text: &str) -> String {
    let words: Vec<&str> = text
        .lines()
        .filter(|l| !is_copyright_line(l))
        .flat_map(str::split_whitespace)
        .collect();
    words.join(" ")
}

/// A crate's copy of a licence text: the crate, the file, its copyright lines.
type Copy = (String, String, Vec<String>);

/// THIRD-PARTY-LICENSES.md: each licence text the crates in the binary
/// ship, once, with the crates under it and the copyright lines of their
/// copies; the crates that ship no licence file, with their authors.
fn licence_texts(crates: &BTreeMap<(String, String), Shipped>) -> String {
    // key -> (the first copy's text, its copies)
    let mut groups: BTreeMap<String, (String, Vec<Copy>)> = BTreeMap::new();
    let mut without = Vec::new();
    for ((name, version), shipped) in crates {
        let mut files: Vec<String> = fs::read_dir(&shipped.dir)
            .unwrap_or_else(|e| panic!("{}: {e}", shipped.dir.display()))
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let file = entry.file_name().into_string().ok()?;
                (is_licence_file(&file) && entry.path().is_file()).then_some(file)
            })
            .collect();
        files.sort();
        if files.is_empty() {
            without.push(format!(
                "- {name} {version} ({}, declared in its manifest; authors: {})",
                shipped.licence.as_deref().unwrap_or("no licence declared"),
                shipped.authors.join(", ")
            ));
        }
        for file in files {
            let raw = fs::read(shipped.dir.join(&file)).expect("a licence file");
            let text = String::from_utf8_lossy(&raw).replace("\r\n", "\n");
            let holders: Vec<String> = text
                .lines()
                .filter(|l| is_copyright_line(l))
                .map(|l| l.trim().to_owned())
                .collect();
            groups
                .entry(licence_key(&text))
                .or_insert_with(|| (text.clone(), Vec::new()))
                .1
                .push((format!("{name} {version}"), file, holders));
        }
    }
    let mut out = String::from(
        "# Licence texts of the crates in rum-pipeline's binary\n\n\
         Generated by `THIRD_PARTY_UPDATE=1 cargo test --test third_party` from the licence files \
         each crate's package ships (the crates and their declared licences are listed in \
         [THIRD-PARTY.md](THIRD-PARTY.md)). Copies of one licence that differ only in their \
         copyright lines, line breaks or indentation are shown once: the text as the first crate \
         ships it, then every crate that ships it with the copyright lines of its own copy.\n",
    );
    let mut ordered: Vec<_> = groups.into_values().collect();
    ordered.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.1[0].0.cmp(&b.1[0].0)));
    for (i, (text, users)) in ordered.iter().enumerate() {
        out.push_str(&format!(
            "\n## Text {} ({} crates)\n\nShipped by:\n\n",
            i + 1,
            users.len()
        ));
        for (krate, file, holders) in users {
            let holders = if holders.is_empty() {
                String::new()
            } else {
                format!(": {}", holders.join("; "))
            };
            out.push_str(&format!("- {krate} (`{file}`){holders}\n"));
        }
        // A fence longer than any run of backticks in the text.
        let fence = "`".repeat(
            text.split(|c| c != '`')
                .map(str::len)
                .max()
                .unwrap_or(0)
                .max(2)
                + 1,
        );
        out.push_str(&format!("\n{fence}text\n{}\n{fence}\n", text.trim_end()));
    }
    if !without.is_empty() {
        out.push_str(
            "\n## Crates that ship no licence file\n\n\
             Their licence is the standard text of the SPDX id they declare (above, as other \
             crates ship it), with their authors as the holders.\n\n",
        );
        out.push_str(&without.join("\n"));
        out.push('\n');
    }
    out
}

/// Permissive licences ask for their text and notices to go with the
/// binary: the image ships this file (deployments/docker/Dockerfile).
#[test]
fn the_licence_texts_of_every_crate_in_the_binary_are_in_the_repository() {
    let crates = shipped_crates();
    let expected = licence_texts(&crates);
    let path = root().join(TEXTS);
    if std::env::var_os("THIRD_PARTY_UPDATE").is_some() {
        fs::write(&path, &expected).expect("write the licence texts");
        return;
    }
    let kept = fs::read_to_string(&path).unwrap_or_default();
    assert!(
        kept == expected,
        "{TEXTS} is not the licence texts of the crates Cargo.lock builds into the binary \
         (THIRD_PARTY_UPDATE=1 cargo test --test third_party rewrites it)"
    );
    // Every crate is in it, with a text or under the ones that ship none.
    for (name, version) in crates.keys() {
        assert!(
            kept.contains(&format!("- {name} {version} ")),
            "{name} {version} is not in {TEXTS}"
        );
    }
}
