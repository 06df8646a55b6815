//! Every file we ship under configs/ loads without errors, alone and with its directory.

use std::path::PathBuf;

use crate::repo;

fn yaml_files(dir: PathBuf, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(path, out);
        } else if path
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            out.push(path);
        }
    }
}

#[test]
fn every_shipped_config_is_valid() {
    let mut files = Vec::new();
    yaml_files(repo().join("configs"), &mut files);
    assert!(!files.is_empty());
    let mut dirs: Vec<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(PathBuf::from))
        .collect();
    dirs.sort();
    dirs.dedup();
    for path in files {
        let problems = ferry_control::check(vec![path.clone()]);
        let errors: Vec<String> = problems
            .iter()
            .filter(|p| p.is_error())
            .map(ToString::to_string)
            .collect();
        assert!(
            errors.is_empty(),
            "{}:\n{}",
            path.display(),
            errors.join("\n")
        );
    }
    // A whole directory must be free of errors and warnings: a shipped config refers only to
    // what it ships.
    for dir in dirs {
        let warnings: Vec<String> = ferry_control::check(vec![dir.clone()])
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            warnings.is_empty(),
            "{}:\n{}",
            dir.display(),
            warnings.join("\n")
        );
    }
}
