//! Tries to put more on the host's disk than `/output` may hold, in the
//! ways a check that walks host paths misses or pays for:
//!
//! - `deep`: 20 folders of 250-character names (past the host's path
//!   limit), each created relative to the one above it through directory
//!   descriptors as WASI allows, then one file in the deepest written
//!   forever;
//! - `files`: 150,000 empty files;
//! - `dirs`: 200,000 empty folders.
//!
//! Exits 0 only if it got to the end, which a sandbox with an output cap
//! never lets it do.
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    fn path_create_directory(fd: u32, path: *const u8, len: usize) -> u16;
    #[allow(clippy::too_many_arguments)]
    fn path_open(
        fd: u32,
        dirflags: u32,
        path: *const u8,
        len: usize,
        oflags: u16,
        rights_base: u64,
        rights_inheriting: u64,
        fdflags: u16,
        opened: *mut u32,
    ) -> u16;
}

const O_CREAT: u16 = 1;
const O_DIRECTORY: u16 = 2;
/// Every right preview 1 defines (30 of them).
const ALL_RIGHTS: u64 = (1 << 30) - 1;
/// A folder's: every right but writing (fd_datasync, fd_write, fd_allocate,
/// fd_filestat_set_size), which a folder refuses with EISDIR.
const DIR_RIGHTS: u64 = ALL_RIGHTS & !(1 << 0 | 1 << 6 | 1 << 8 | 1 << 22);

/// Opens (creating with `oflags`) `name` relative to the descriptor `dir`.
fn open_at(dir: u32, name: &str, oflags: u16) -> u32 {
    let mut fd = 0u32;
    let rights = if oflags & O_DIRECTORY != 0 {
        DIR_RIGHTS
    } else {
        ALL_RIGHTS
    };
    // SAFETY: the pointers are to live memory of the lengths given.
    let errno = unsafe {
        path_open(dir, 0, name.as_ptr(), name.len(), oflags, rights, ALL_RIGHTS, 0, &mut fd)
    };
    assert_eq!(errno, 0, "path_open {name}: errno {errno}");
    fd
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    match mode.as_str() {
        "deep" => {
            let output = fs::File::open("/output").expect("/output");
            let mut dir = u32::try_from(output.as_raw_fd()).expect("an fd");
            let name = "d".repeat(250);
            for _ in 0..20 {
                // SAFETY: the pointer is to live memory of the length given.
                let errno = unsafe { path_create_directory(dir, name.as_ptr(), name.len()) };
                assert_eq!(errno, 0, "path_create_directory: errno {errno}");
                dir = open_at(dir, &name, O_DIRECTORY);
            }
            let fd = open_at(dir, "flood", O_CREAT);
            // SAFETY: the descriptor was just opened and is owned here.
            let mut file = unsafe { fs::File::from_raw_fd(i32::try_from(fd).expect("an fd")) };
            let chunk = vec![7u8; 1 << 20];
            loop {
                file.write_all(&chunk).expect("a write");
            }
        }
        "files" => {
            for i in 0..150_000 {
                fs::File::create(format!("/output/f{i}")).expect("a file");
            }
        }
        "dirs" => {
            for i in 0..200_000 {
                fs::create_dir(format!("/output/d{i}")).expect("a folder");
            }
        }
        other => {
            eprintln!("output-flood: unknown mode {other:?} (deep, files, dirs)");
            std::process::exit(2);
        }
    }
    println!("wrote everything");
}
