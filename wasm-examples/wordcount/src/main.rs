//! Counts the words of every file under /input and writes a report to
//! /output/report.txt: one `COUNT PATH` line per file, sorted by path, then
//! `TOTAL COUNT`. The report is also printed to stdout.

use std::fs;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&entry.path(), files)?;
        } else if kind.is_file() {
            files.push(entry.path());
        }
    }
    Ok(())
}

fn count_words(path: &Path) -> std::io::Result<u64> {
    let bytes = fs::read(path)?;
    Ok(bytes
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .count() as u64)
}

fn main() {
    let root = Path::new("/input");
    let mut files = Vec::new();
    if let Err(e) = walk(root, &mut files) {
        eprintln!("wordcount: cannot read /input: {e}");
        std::process::exit(1);
    }
    files.sort();
    let mut report = String::new();
    let mut total = 0u64;
    for file in &files {
        match count_words(file) {
            Ok(n) => {
                total += n;
                let rel = file.strip_prefix(root).unwrap_or(file);
                report.push_str(&format!("{n} {}\n", rel.display()));
            }
            Err(e) => {
                eprintln!("wordcount: cannot read {}: {e}", file.display());
                std::process::exit(1);
            }
        }
    }
    report.push_str(&format!("TOTAL {total}\n"));
    if let Err(e) = fs::write("/output/report.txt", &report) {
        eprintln!("wordcount: cannot write /output/report.txt: {e}");
        std::process::exit(1);
    }
    print!("{report}");
}
