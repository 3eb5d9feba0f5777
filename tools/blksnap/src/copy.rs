// SPDX-License-Identifier: GPL-2.0
//! Copying and comparing byte ranges of files and block devices in large
//! chunks, leaving holes for zeros in sparse files. No ioctls here: the
//! engine is tested on regular files.

use crate::failed;
use anyhow::Result;
use nix::fcntl::{fallocate, FallocateFlags};
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::ops::{Deref, Range};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The most read or written at once.
pub const CHUNK: usize = 4 << 20;
/// Zeros are looked for in pieces of this size, a file system block.
const ZERO_GRANULE: usize = 4096;

/// What data can be read from at any offset: a file, a device, or a
/// restore point's chain of images.
pub trait ReadAt {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()>;
}

/// An open file and its path, for error messages that name it.
#[derive(Debug)]
pub struct NamedFile {
    file: File,
    path: PathBuf,
}

impl NamedFile {
    /// `file`, open from `path`.
    pub fn new(file: File, path: &Path) -> Self {
        Self {
            file,
            path: path.to_owned(),
        }
    }

    pub fn open(path: &Path, options: &OpenOptions) -> Result<Self> {
        let file = options
            .open(path)
            .map_err(|e| failed("cannot open", path.display(), e))?;
        Ok(Self::new(file, path))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The size in bytes; of a block device too, whose metadata says 0.
    pub fn size(&self) -> Result<u64> {
        (&self.file)
            .seek(SeekFrom::End(0))
            .map_err(|e| failed("cannot get the size of", self.path.display(), e))
    }

    pub fn set_len(&self, len: u64) -> Result<()> {
        self.file
            .set_len(len)
            .map_err(|e| failed("cannot set the size of", self.path.display(), e))
    }

    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        self.file.read_exact_at(buf, offset).map_err(|e| {
            failed(
                "cannot read",
                format!("{} at byte {offset}", self.path.display()),
                e,
            )
        })
    }

    pub fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.file.write_all_at(buf, offset).map_err(|e| {
            failed(
                "cannot write",
                format!("{} at byte {offset}", self.path.display()),
                e,
            )
        })
    }

    /// Deallocate `len` bytes at `offset`, which then read as zeros; false
    /// if the file system cannot.
    fn punch_hole(&self, offset: u64, len: u64) -> Result<bool> {
        let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        // Offsets of files are below 2^63.
        match fallocate(self.file.as_raw_fd(), flags, offset as i64, len as i64) {
            Ok(()) => Ok(true),
            Err(nix::errno::Errno::EOPNOTSUPP) => Ok(false),
            Err(e) => Err(failed(
                "cannot punch a hole in",
                format!("{} at byte {offset}", self.path.display()),
                e.into(),
            )),
        }
    }

    /// Write everything to the disk.
    pub fn sync(&self) -> Result<()> {
        self.file
            .sync_all()
            .map_err(|e| failed("cannot sync", self.path.display(), e))
    }
}

impl ReadAt for NamedFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        NamedFile::read_at(self, buf, offset)
    }
}

/// A file written as NAME.partial that replaces NAME only once complete and
/// on disk, so that a crash or an error never leaves a half-written NAME;
/// NAME.partial is removed if dropped before.
pub struct NewFile {
    file: NamedFile,
    dest: PathBuf,
    committed: bool,
}

impl NewFile {
    pub fn create(dest: &Path) -> Result<Self> {
        let mut temp = OsString::from(dest);
        temp.push(".partial");
        let file = NamedFile::open(
            Path::new(&temp),
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true),
        )?;
        Ok(Self {
            file,
            dest: dest.to_owned(),
            committed: false,
        })
    }

    /// Sync the file and rename it to its real name.
    pub fn commit(mut self) -> Result<()> {
        self.file.sync()?;
        std::fs::rename(&self.file.path, &self.dest).map_err(|e| {
            failed(
                "cannot rename",
                format!("{} to {}", self.file.path.display(), self.dest.display()),
                e,
            )
        })?;
        self.committed = true;
        // The rename itself is on disk once the directory is.
        let dir = match self.dest.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| failed("cannot sync", dir.display(), e))
    }
}

impl Deref for NewFile {
    type Target = NamedFile;
    fn deref(&self) -> &NamedFile {
        &self.file
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the error being reported is what went wrong.
            let _ = std::fs::remove_file(&self.file.path);
        }
    }
}

/// `range` cut into pieces of at most [`CHUNK`] bytes.
fn chunks(range: Range<u64>) -> impl Iterator<Item = Range<u64>> {
    let end = range.end;
    range
        .step_by(CHUNK)
        .map(move |start| start..end.min(start + CHUNK as u64))
}

/// Whether `data` is all zeros.
pub fn is_zero(data: &[u8]) -> bool {
    // Whole words OR-ed without an early exit, which the compiler vectorises:
    // this runs over every byte of a full backup.
    let words = data.chunks_exact(8);
    let tail = words.remainder().iter().fold(0, |acc, &b| acc | b);
    let body = words.fold(0, |acc, w| {
        acc | u64::from_ne_bytes(w.try_into().expect("8 bytes"))
    });
    body == 0 && tail == 0
}

/// `data` cut into runs of zero and non-zero [`ZERO_GRANULE`]s: whether the
/// run is zeros, and its bytes.
fn zero_runs(data: &[u8]) -> Vec<(bool, Range<usize>)> {
    let mut runs: Vec<(bool, Range<usize>)> = Vec::new();
    for (i, piece) in data.chunks(ZERO_GRANULE).enumerate() {
        let zero = is_zero(piece);
        let start = i * ZERO_GRANULE;
        match runs.last_mut() {
            Some((z, run)) if *z == zero => run.end = start + piece.len(),
            _ => runs.push((zero, start..start + piece.len())),
        }
    }
    runs
}

/// Copy `ranges` of `src` to the same offsets in `dst`, and call `progress`
/// with the length of each chunk done; an error from it stops the copy.
/// Where `src` holds zeros, holes are punched in `dst` (a block device
/// zeroes the range, a thin or loop device stays thin), or zeros written
/// where that cannot be done.
pub fn copy(
    src: &dyn ReadAt,
    dst: &NamedFile,
    ranges: &[Range<u64>],
    progress: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<()> {
    let mut buf = vec![0u8; CHUNK];
    for chunk in ranges.iter().flat_map(|r| chunks(r.clone())) {
        let len = chunk.end - chunk.start;
        let data = &mut buf[..len as usize];
        src.read_at(data, chunk.start)?;
        for (zero, run) in zero_runs(data) {
            let at = chunk.start + run.start as u64;
            // Zeros are written only where a hole cannot be punched.
            let write = !zero || !dst.punch_hole(at, run.len() as u64)?;
            if write {
                dst.write_at(&data[run], at)?;
            }
        }
        progress(len)?;
    }
    Ok(())
}

/// Where two files differ.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Difference {
    /// The offset of the first differing byte.
    pub first: Option<u64>,
    /// How many bytes differ.
    pub bytes: u64,
}

/// Compare the first `len` bytes of `a` and `b`, calling `progress` as
/// [`copy`] does.
pub fn compare(
    a: &dyn ReadAt,
    b: &dyn ReadAt,
    len: u64,
    progress: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<Difference> {
    let (mut x, mut y) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut diff = Difference::default();
    for chunk in chunks(0..len) {
        let n = (chunk.end - chunk.start) as usize;
        let (x, y) = (&mut x[..n], &mut y[..n]);
        a.read_at(x, chunk.start)?;
        b.read_at(y, chunk.start)?;
        // Byte by byte only in the rare chunk that differs.
        if x != y {
            let mut differing = (0u64..).zip(x.iter().zip(y.iter())).filter(|(_, (p, q))| p != q);
            if let Some((i, _)) = differing.next() {
                diff.first.get_or_insert(chunk.start + i);
                diff.bytes += 1 + differing.count() as u64;
            }
        }
        progress(n as u64)?;
    }
    Ok(diff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::bail;
    use std::os::unix::fs::MetadataExt;

    const MIB: usize = 1 << 20;

    fn rw() -> OpenOptions {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        options
    }

    /// A file of `data` in `dir`, open read-write.
    fn file(dir: &Path, name: &str, data: &[u8]) -> NamedFile {
        let path = dir.join(name);
        std::fs::write(&path, data).unwrap();
        NamedFile::open(&path, &rw()).unwrap()
    }

    /// Bytes that are never zero, different for each `seed`.
    fn noise(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed | 1).collect()
    }

    fn no_progress() -> impl FnMut(u64) -> Result<()> {
        |_| Ok(())
    }

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0; 4099]));
        for at in [0, 7, 8, 4095, 4096, 4098] {
            let mut data = vec![0u8; 4099];
            data[at] = 1;
            assert!(!is_zero(&data), "byte {at}");
        }
    }

    #[test]
    fn runs_of_zeros() {
        let mut data = vec![0u8; 5 * ZERO_GRANULE + 100];
        data[ZERO_GRANULE] = 1;
        data[2 * ZERO_GRANULE + 5] = 1;
        data[5 * ZERO_GRANULE + 99] = 1;
        let g = ZERO_GRANULE;
        assert_eq!(
            zero_runs(&data),
            vec![
                (true, 0..g),
                (false, g..3 * g),
                (true, 3 * g..5 * g),
                (false, 5 * g..5 * g + 100)
            ]
        );
        assert_eq!(zero_runs(&[]), vec![]);
        assert_eq!(zero_runs(&[0; 10]), vec![(true, 0..10)]);
    }

    #[test]
    fn chunk_bounds() {
        let c = CHUNK as u64;
        assert_eq!(chunks(0..0).count(), 0);
        assert_eq!(chunks(5..10).collect::<Vec<_>>(), vec![5..10]);
        assert_eq!(chunks(0..c).collect::<Vec<_>>(), vec![0..c]);
        assert_eq!(
            chunks(1..2 * c + 3).collect::<Vec<_>>(),
            vec![1..c + 1, c + 1..2 * c + 1, 2 * c + 1..2 * c + 3]
        );
    }

    #[test]
    fn full_copy_is_sparse_and_equal() {
        let dir = tempfile::tempdir().unwrap();
        // 16 MiB, mostly zeros: data at the start, in the middle across a
        // chunk boundary, and in the partial last block.
        let len = 16 * MIB + 512;
        let mut data = vec![0u8; len];
        data[..8192].copy_from_slice(&noise(8192, 1));
        data[CHUNK - 100..CHUNK + 100].copy_from_slice(&noise(200, 2));
        data[len - 10..].copy_from_slice(&noise(10, 3));
        let src = file(dir.path(), "src", &data);
        let dst = NewFile::create(&dir.path().join("dst")).unwrap();
        dst.set_len(len as u64).unwrap();

        let mut done = 0;
        let all = 0..len as u64;
        copy(&src, &dst, &[all], &mut |n| {
            done += n;
            Ok(())
        })
        .unwrap();
        assert_eq!(done, len as u64);
        dst.commit().unwrap();

        let path = dir.path().join("dst");
        assert_eq!(std::fs::read(&path).unwrap(), data);
        // 8 KiB + two 4 KiB pieces + the tail: far less than 16 MiB.
        let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(allocated <= 64 << 10, "{allocated} bytes allocated");
        assert!(!dir.path().join("dst.partial").exists());
    }

    #[test]
    fn incremental_copy_makes_equal() {
        let dir = tempfile::tempdir().unwrap();
        let block = 65536;
        let len = 40 * block + 1000;
        let old = noise(len, 4);
        let mut new = old.clone();
        // Changed blocks: new data, zeros (an old block now zero), and a
        // partial last block.
        new[3 * block..5 * block].copy_from_slice(&noise(2 * block, 5));
        new[9 * block..10 * block].fill(0);
        new[10 * block..11 * block].copy_from_slice(&noise(block, 6));
        new[40 * block..].copy_from_slice(&noise(1000, 7));
        let b = block as u64;
        let changed = [3 * b..5 * b, 9 * b..11 * b, 40 * b..len as u64];

        let src = file(dir.path(), "src", &new);
        let dst = file(dir.path(), "dst", &old);
        copy(&src, &dst, &changed, &mut no_progress()).unwrap();
        assert!(std::fs::read(dir.path().join("dst")).unwrap() == new);
        let diff = compare(&src, &dst, len as u64, &mut no_progress()).unwrap();
        assert_eq!(diff, Difference::default());
        // Only the ranges given are copied.
        let src = file(dir.path(), "src", &new);
        let dst = file(dir.path(), "dst", &old);
        copy(&src, &dst, &changed[..1], &mut no_progress()).unwrap();
        let diff = compare(&src, &dst, len as u64, &mut no_progress()).unwrap();
        assert_eq!(diff.first, Some(9 * b));
    }

    #[test]
    fn differences_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let len = CHUNK + 4096;
        let a = noise(len, 8);
        let mut b = a.clone();
        b[CHUNK - 1] ^= 0xff;
        b[CHUNK] ^= 0xff;
        b[len - 1] ^= 0xff;
        let (fa, fb) = (file(dir.path(), "a", &a), file(dir.path(), "b", &b));
        let mut seen = 0;
        let diff = compare(&fa, &fb, len as u64, &mut |n| {
            seen += n;
            Ok(())
        })
        .unwrap();
        assert_eq!(
            diff,
            Difference {
                first: Some(CHUNK as u64 - 1),
                bytes: 3
            }
        );
        assert_eq!(seen, len as u64);
        // Up to a length before the differences.
        let diff = compare(&fa, &fb, CHUNK as u64 - 1, &mut no_progress()).unwrap();
        assert_eq!(diff, Difference::default());
        // Reading past the end is an error that names the file.
        let err = compare(&fa, &fb, len as u64 + 1, &mut no_progress()).unwrap_err();
        assert!(err.to_string().starts_with("cannot read"), "{err}");
    }

    #[test]
    fn progress_can_stop_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let len = 3 * CHUNK;
        let src = file(dir.path(), "src", &noise(len, 9));
        let dst = file(dir.path(), "dst", &[]);
        let mut calls = 0;
        let all = 0..len as u64;
        let err = copy(&src, &dst, &[all], &mut |_| {
            calls += 1;
            if calls == 1 {
                Ok(())
            } else {
                bail!("interrupted")
            }
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "interrupted");
        assert_eq!(dst.size().unwrap(), 2 * CHUNK as u64);
    }

    #[test]
    fn new_file_removed_unless_committed() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("x.img");
        std::fs::write(&dest, b"old").unwrap();
        let new = NewFile::create(&dest).unwrap();
        new.write_at(b"new", 0).unwrap();
        assert!(dir.path().join("x.img.partial").exists());
        drop(new);
        assert!(!dir.path().join("x.img.partial").exists());
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");

        let new = NewFile::create(&dest).unwrap();
        new.write_at(b"new", 0).unwrap();
        new.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new");
        assert!(!dir.path().join("x.img.partial").exists());
    }

    #[test]
    fn errors_name_the_file() {
        let err = NamedFile::open(Path::new("/nonexistent/x"), &rw()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot open /nonexistent/x: No such file or directory (ENOENT)"
        );
    }
}
