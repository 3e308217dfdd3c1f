//! Many small files, for jobs over large directories.
//!
//! - `manyfiles write COUNT` creates `/output/file-NNNNNN` for NNNNNN in
//!   0..COUNT, each holding its number and a newline; prints
//!   `wrote COUNT files`.
//! - `manyfiles read COUNT` opens `/input/file-NNNNNN` by name for each
//!   NNNNNN in 0..COUNT (without listing the directory) and checks each
//!   holds its number; prints `read COUNT files`.

use std::fs;
use std::path::Path;

fn fail(message: String) -> ! {
    eprintln!("manyfiles: {message}");
    std::process::exit(1);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let count = args.get(2).and_then(|c| c.parse::<u64>().ok());
    match (args.get(1).map(String::as_str), count) {
        (Some("write"), Some(count)) => {
            for i in 0..count {
                let path = Path::new("/output").join(format!("file-{i:06}"));
                if let Err(e) = fs::write(&path, format!("{i}\n")) {
                    fail(format!("cannot write {}: {e}", path.display()));
                }
            }
            println!("wrote {count} files");
        }
        (Some("read"), Some(count)) => {
            for i in 0..count {
                let path = Path::new("/input").join(format!("file-{i:06}"));
                match fs::read_to_string(&path) {
                    Ok(text) if text == format!("{i}\n") => {}
                    Ok(_) => fail(format!("{} holds something else", path.display())),
                    Err(e) => fail(format!("cannot read {}: {e}", path.display())),
                }
            }
            println!("read {count} files");
        }
        _ => {
            eprintln!("usage: manyfiles write|read COUNT");
            std::process::exit(2);
        }
    }
}
