//! Writes many small files: `manyfiles COUNT [DIR]` creates
//! `/output/DIR/file-NNNNNN` (or `/output/file-NNNNNN`) for NNNNNN in
//! 0..COUNT, each holding its number and a newline, then prints
//! `wrote COUNT files`. For jobs whose result is a large directory.

use std::fs;
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(count) = args.get(1).and_then(|c| c.parse::<u64>().ok()) else {
        eprintln!("usage: manyfiles COUNT [DIR]");
        std::process::exit(2);
    };
    let dir = match args.get(2) {
        Some(sub) => Path::new("/output").join(sub),
        None => Path::new("/output").to_path_buf(),
    };
    if let Err(e) = fs::create_dir_all(&dir) {
        eprintln!("manyfiles: cannot create {}: {e}", dir.display());
        std::process::exit(1);
    }
    for i in 0..count {
        let path = dir.join(format!("file-{i:06}"));
        if let Err(e) = fs::write(&path, format!("{i}\n")) {
            eprintln!("manyfiles: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    println!("wrote {count} files");
}
