//! The mdBook under `docs/`: every chapter the summary lists exists and says something, is
//! compiled as doctests, marks every code block, and ends with "How we know", whose every
//! test reference names a test function that exists.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The chapter files the summary links, in order.
fn chapters() -> Vec<String> {
    let summary = std::fs::read_to_string(repo().join("docs/src/SUMMARY.md")).unwrap();
    summary
        .split("](")
        .skip(1)
        .map(|link| link.split(')').next().unwrap().to_owned())
        .collect()
}

fn chapter(file: &str) -> String {
    std::fs::read_to_string(repo().join("docs/src").join(file))
        .unwrap_or_else(|e| panic!("SUMMARY.md links {file}: {e}"))
}

#[test]
fn every_chapter_in_the_summary_exists() {
    let chapters = chapters();
    for file in &chapters {
        assert!(chapter(file).lines().count() > 10, "{file} is a stub");
    }
    assert!(chapters.len() >= 7, "{} chapters", chapters.len());
}

#[test]
fn every_chapter_is_compiled_as_doctests() {
    let lib = std::fs::read_to_string(repo().join("dbos-core/src/lib.rs")).unwrap();
    for file in chapters() {
        let include = format!("include_str!(\"../../docs/src/{file}\")");
        assert!(
            lib.contains(&include),
            "{file} is not in dbos-core/src/lib.rs's `mod book`, so its examples are not compiled: add `#[doc = {include}]`"
        );
    }
}

/// The info string of every code fence that opens a block.
fn fences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut open = false;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(info) = t.strip_prefix("```") {
            if !open {
                out.push(info.trim().to_owned());
            }
            open = !open;
        }
    }
    out
}

#[test]
fn every_code_block_is_compiled_or_says_what_it_is() {
    for file in chapters() {
        for info in fences(&chapter(&file)) {
            let parts: Vec<&str> = info.split(',').map(str::trim).collect();
            match parts[0] {
                "rust" => assert!(
                    parts[1..].iter().all(|p| *p == "no_run"),
                    "{file}: a ```{info} block is not compiled; make it compile (`no_run` if it needs a database)"
                ),
                "" => panic!("{file}: a code block without a language; say `rust`, `sh`, `text`, `sql`, `json`..."),
                _ => {}
            }
        }
    }
}

/// `fn <name>` or `fn <name>(` appears in the file.
fn defines(source: &str, name: &str) -> bool {
    source.match_indices(&format!("fn {name}")).any(|(i, m)| {
        source[i + m.len()..]
            .chars()
            .next()
            .is_some_and(|c| c == '(' || c == '<')
    })
}

fn is_test_name(token: &str) -> bool {
    token.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && token
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[test]
fn every_chapter_says_how_we_know_and_names_real_tests() {
    for file in chapters() {
        let text = chapter(&file);
        let section = text
            .split("\n## How we know\n")
            .nth(1)
            .unwrap_or_else(|| panic!("{file} has no \"## How we know\" section"));
        assert!(
            !section.contains("\n## "),
            "{file}: \"How we know\" must be the last section"
        );
        let bullets: Vec<String> = section
            .split("\n- ")
            .skip(1)
            .map(|b| b.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        assert!(!bullets.is_empty(), "{file}: \"How we know\" lists nothing");
        for bullet in bullets {
            let mut current: Option<(String, String)> = None;
            let mut named = 0;
            for token in bullet.split('`').skip(1).step_by(2) {
                if token.ends_with(".rs") {
                    let source = std::fs::read_to_string(repo().join(token))
                        .unwrap_or_else(|e| panic!("{file} names {token}: {e}"));
                    current = Some((token.to_owned(), source));
                } else if let (true, Some((path, source))) = (is_test_name(token), &current) {
                    assert!(
                        defines(source, token),
                        "{file} names `{token}` in {path}, which has no such function"
                    );
                    named += 1;
                }
            }
            assert!(
                named > 0
                    || bullet.starts_with("Not covered by a test")
                    || bullet.contains("not a test"),
                "{file}: this claim names no test: {bullet}"
            );
        }
    }
}

/// The crate is not published: links to docs.rs pages that do not exist, or to a placeholder
/// repository, lead nowhere. (The API reference is `cargo doc -p dbos-core --open`.)
#[test]
fn no_chapter_links_to_pages_that_do_not_exist() {
    let mut texts: Vec<(String, String)> = chapters()
        .into_iter()
        .map(|f| (f.clone(), chapter(&f)))
        .collect();
    for file in ["README.md", "Cargo.toml"] {
        texts.push((
            file.to_owned(),
            std::fs::read_to_string(repo().join(file)).unwrap(),
        ));
    }
    for (file, text) in texts {
        for dead in ["docs.rs/dbos", "example.invalid/dbos"] {
            assert!(!text.contains(dead), "{file} links {dead}");
        }
    }
}

/// An SVG as `dot` writes it, without the comment naming the Graphviz version.
fn svg_body(svg: &str) -> String {
    let mut out = String::new();
    let mut in_comment = false;
    for line in svg.lines() {
        if line.starts_with("<!-- Generated by graphviz") {
            in_comment = !line.trim_end().ends_with("-->");
            continue;
        }
        if in_comment {
            in_comment = !line.trim_end().ends_with("-->");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every picture in the book is a committed SVG next to its Graphviz source, shown by a
/// chapter; where `dot` is installed, rendering the source again gives the committed SVG.
#[test]
fn every_diagram_is_rendered_from_its_source() {
    let dir = repo().join("docs/src/diagrams");
    let all: String = chapters().iter().map(|f| chapter(f)).collect();
    let mut sources = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
        match ext {
            "svg" => assert!(
                dir.join(format!("{name}.dot")).is_file(),
                "diagrams/{name}.svg has no source diagrams/{name}.dot"
            ),
            "dot" => {
                sources += 1;
                let svg = dir.join(format!("{name}.svg"));
                let committed = std::fs::read_to_string(&svg)
                    .unwrap_or_else(|e| panic!("diagrams/{name}.dot is not rendered: {e}"));
                assert!(
                    all.contains(&format!("(diagrams/{name}.svg)")),
                    "no chapter shows diagrams/{name}.svg"
                );
                match std::process::Command::new("dot")
                    .arg("-Tsvg")
                    .arg(&path)
                    .output()
                {
                    Ok(out) if out.status.success() => assert!(
                        svg_body(&String::from_utf8(out.stdout).unwrap()) == svg_body(&committed),
                        "diagrams/{name}.svg is stale: run `dot -Tsvg docs/src/diagrams/{name}.dot -o docs/src/diagrams/{name}.svg`"
                    ),
                    _ => eprintln!("`dot` (Graphviz) is not installed: diagrams/{name}.svg not re-rendered"),
                }
            }
            _ => {}
        }
    }
    assert!(
        sources >= 2,
        "the architecture and the crash-recovery pictures"
    );
}
