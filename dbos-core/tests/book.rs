//! The mdBook under `docs/`: every chapter the summary lists exists and says something.

#[test]
fn every_chapter_in_the_summary_exists() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src");
    let summary = std::fs::read_to_string(src.join("SUMMARY.md")).unwrap();
    let mut chapters = 0;
    for link in summary.split("](").skip(1) {
        let file = link.split(')').next().unwrap();
        let text = std::fs::read_to_string(src.join(file))
            .unwrap_or_else(|e| panic!("SUMMARY.md links {file}: {e}"));
        assert!(text.lines().count() > 10, "{file} is a stub");
        chapters += 1;
    }
    assert!(chapters >= 7, "{chapters} chapters");
}
