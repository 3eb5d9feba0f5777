// SPDX-License-Identifier: GPL-2.0
//! The sectors of a block device that hold a file, for markdirtyblock -f:
//! the file's extents from FS_IOC_FIEMAP as 512-byte sector ranges.

use crate::args::SECTOR_SIZE;
use crate::{describe, errno, failed};
use crate::ioctl::{self, FiemapExtent, FIEMAP_EXTENT_DELALLOC, FIEMAP_EXTENT_LAST, FIEMAP_EXTENT_UNKNOWN};
use anyhow::{anyhow, bail, Context, Result};
use blksnap_uapi::BlksnapSectors;
use nix::errno::Errno;
use nix::sys::stat::{major, minor};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The block device that the file system of the file at `path` is on: the
/// name upstream's tool shows for it, `/dev/block/MAJ:MIN`, and a node to
/// open it by (that one, or the kernel's name for it where no udev made it).
pub fn device_of(path: &Path) -> Result<(String, PathBuf)> {
    let dev = std::fs::metadata(path)
        .map_err(|e| failed("cannot stat", path.display(), e))?
        .dev();
    let id = format!("{}:{}", major(dev), minor(dev));
    let shown = format!("/dev/block/{id}");
    if Path::new(&shown).exists() {
        return Ok((shown.clone(), shown.into()));
    }
    let uevent = std::fs::read_to_string(format!("/sys/dev/block/{id}/uevent"))
        .with_context(|| format!("{} is on device {id}, which is not a block device", path.display()))?;
    let name = uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVNAME="))
        .ok_or_else(|| anyhow!("block device {id} has no name"))?;
    Ok((shown, Path::new("/dev").join(name)))
}

/// The sector ranges of the block device open as `dev`, from `device`, that
/// hold the data of the regular file at `path`, one per extent in file
/// order. The file must be on a file system on `device` itself: its extents
/// are offsets into that device.
pub fn file_sectors(dev: &File, device: &Path, path: &Path) -> Result<Vec<BlksnapSectors>> {
    // Non-blocking: a FIFO given by mistake must not hang the open.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| failed("cannot open", path.display(), e))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", path.display());
    }
    let dev_meta = dev
        .metadata()
        .with_context(|| format!("cannot stat {}", device.display()))?;
    if !dev_meta.file_type().is_block_device() {
        bail!("{} is not a block device", device.display());
    }
    same_device(meta.dev(), dev_meta.rdev())
        .map_err(|e| anyhow!("{} is not on {}: {e}", path.display(), device.display()))?;
    let extents = extents_of(&file).with_context(|| format!("cannot get the extents of {}", path.display()))?;
    extents
        .iter()
        .map(sectors)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// Whether the file system of a file, on device `file_dev`, is on block
/// device `rdev`.
fn same_device(file_dev: u64, rdev: u64) -> Result<(), String> {
    if file_dev == rdev {
        return Ok(());
    }
    Err(format!(
        "its file system is on device {}:{}, not on {}:{}; for a file system on a partition, \
         give the partition",
        major(file_dev),
        minor(file_dev),
        major(rdev),
        minor(rdev)
    ))
}

/// All the extents of `file`, with its dirty data written out first.
fn extents_of(file: &File) -> Result<Vec<FiemapExtent>> {
    all_extents(|start| {
        ioctl::fiemap(file, start).map_err(|e| {
            let words = (errno(&e) == Some(Errno::EOPNOTSUPP))
                .then_some("its file system cannot report file extents (no FIEMAP)");
            anyhow!(describe(&e, words))
        })
    })
}

/// All the extents that `fetch` gives when called with the byte of the file
/// to go on from, until it gives the last one, or none: the rest of the file
/// is a hole.
fn all_extents(mut fetch: impl FnMut(u64) -> Result<Vec<FiemapExtent>>) -> Result<Vec<FiemapExtent>> {
    let mut all = Vec::new();
    let mut start = 0;
    loop {
        let batch = fetch(start)?;
        let Some(last) = batch.last() else {
            return Ok(all);
        };
        let done = last.fe_flags & FIEMAP_EXTENT_LAST != 0;
        let next = last.fe_logical.saturating_add(last.fe_length);
        all.extend_from_slice(&batch);
        if done {
            return Ok(all);
        }
        // A file system that does not move on would have us loop forever.
        if next <= start {
            bail!("FIEMAP gave no extent past byte {start} but not the last one either");
        }
        start = next;
    }
}

/// The sectors holding `extent`, rounded out to whole sectors (an extent of
/// inline data, say, need not be aligned).
fn sectors(extent: &FiemapExtent) -> Result<BlksnapSectors, String> {
    // Such an extent has no place on the device yet; after the sync that
    // FIEMAP did there should be none, and skipping it would lose a change.
    if extent.fe_flags & (FIEMAP_EXTENT_UNKNOWN | FIEMAP_EXTENT_DELALLOC) != 0 {
        return Err(format!(
            "the extent at byte {} has no location on the device even after a sync (flags {:#x})",
            extent.fe_logical, extent.fe_flags
        ));
    }
    let end = extent
        .fe_physical
        .checked_add(extent.fe_length)
        .ok_or_else(|| format!("the extent at byte {} ends past 2^64 bytes", extent.fe_logical))?;
    let first = extent.fe_physical / SECTOR_SIZE;
    Ok(BlksnapSectors {
        offset: first,
        count: end.div_ceil(SECTOR_SIZE) - first,
    })
}

/// `ranges` sorted by offset, with empty ones dropped and overlapping or
/// adjacent ones merged: fewer ranges for the module to mark.
pub fn merge(mut ranges: Vec<BlksnapSectors>) -> Vec<BlksnapSectors> {
    ranges.retain(|r| r.count > 0);
    ranges.sort_unstable_by_key(|r| r.offset);
    let mut merged: Vec<BlksnapSectors> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(m) if r.offset <= m.offset.saturating_add(m.count) => {
                let end = r.offset.saturating_add(r.count).max(m.offset.saturating_add(m.count));
                m.count = end - m.offset;
            }
            _ => merged.push(r),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn extent(logical: u64, physical: u64, length: u64, flags: u32) -> FiemapExtent {
        FiemapExtent {
            fe_logical: logical,
            fe_physical: physical,
            fe_length: length,
            fe_flags: flags,
            ..Default::default()
        }
    }

    fn range(offset: u64, count: u64) -> BlksnapSectors {
        BlksnapSectors { offset, count }
    }

    #[test]
    fn extents_to_sectors() {
        assert_eq!(sectors(&extent(0, 4096, 8192, 0)), Ok(range(8, 16)));
        assert_eq!(sectors(&extent(0, 4096, 8192, FIEMAP_EXTENT_LAST)), Ok(range(8, 16)));
        // Not aligned: rounded out to whole sectors.
        assert_eq!(sectors(&extent(0, 1000, 24, 0)), Ok(range(1, 1)));
        assert_eq!(sectors(&extent(0, 1000, 25, 0)), Ok(range(1, 2)));
        assert_eq!(sectors(&extent(0, 511, 2, 0)), Ok(range(0, 2)));
        assert_eq!(sectors(&extent(0, 512, 0, 0)), Ok(range(1, 0)));
        assert_eq!(
            sectors(&extent(0, u64::MAX - 1023, 1023, 0)),
            Ok(range((1 << 55) - 2, 2))
        );
        assert!(sectors(&extent(7, u64::MAX, 2, 0)).unwrap_err().contains("byte 7"));
        for flags in [FIEMAP_EXTENT_UNKNOWN, FIEMAP_EXTENT_DELALLOC | FIEMAP_EXTENT_LAST] {
            let err = sectors(&extent(4096, 0, 4096, flags)).unwrap_err();
            assert!(err.contains("no location") && err.contains("byte 4096"), "{err}");
        }
    }

    #[test]
    fn ranges_merged() {
        assert_eq!(merge(vec![]), vec![]);
        assert_eq!(merge(vec![range(5, 0)]), vec![]);
        assert_eq!(
            merge(vec![range(100, 8), range(0, 8), range(8, 8), range(50, 1), range(108, 0)]),
            vec![range(0, 16), range(50, 1), range(100, 8)]
        );
        // Overlapping, and one inside another.
        assert_eq!(
            merge(vec![range(10, 10), range(15, 10), range(12, 2), range(30, 5)]),
            vec![range(10, 15), range(30, 5)]
        );
        assert_eq!(merge(vec![range(0, 100), range(10, 5)]), vec![range(0, 100)]);
        assert_eq!(
            merge(vec![range(0, u64::MAX), range(u64::MAX - 1, 1)]),
            vec![range(0, u64::MAX)]
        );
    }

    #[test]
    fn devices() {
        let disk = nix::sys::stat::makedev(7, 0);
        assert_eq!(same_device(disk, disk), Ok(()));
        let err = same_device(nix::sys::stat::makedev(259, 1), disk).unwrap_err();
        assert!(err.contains("259:1, not on 7:0"), "{err}");
    }

    /// A fake FIEMAP over `extents`, giving at most `batch` at a time, and
    /// the starts it was asked for.
    fn fake(extents: &[FiemapExtent], batch: usize) -> (Result<Vec<FiemapExtent>>, Vec<u64>) {
        let mut starts = Vec::new();
        let got = all_extents(|start| {
            starts.push(start);
            Ok(extents
                .iter()
                .filter(|e| e.fe_logical + e.fe_length > start)
                .take(batch)
                .copied()
                .collect())
        });
        (got, starts)
    }

    #[test]
    fn extents_in_batches() {
        let last = FIEMAP_EXTENT_LAST;
        let extents = [
            extent(0, 1 << 20, 4096, 0),
            extent(4096, 8 << 20, 8192, 0),
            extent(1 << 20, 0, 4096, 0),
            extent(2 << 20, 4096, 4096, last),
        ];
        for batch in [1, 2, 3, 4, 256] {
            let (got, starts) = fake(&extents, batch);
            assert_eq!(got.unwrap(), extents, "batch {batch}");
            assert_eq!(starts.len(), extents.len().div_ceil(batch), "batch {batch}");
        }
        let (_, starts) = fake(&extents, 2);
        assert_eq!(starts, [0, 12288]);

        // No extents at all, or a hole at the end without a last extent.
        assert_eq!(fake(&[], 4).0.unwrap(), []);
        let (got, starts) = fake(&extents[..2], 1);
        assert_eq!(got.unwrap(), extents[..2]);
        assert_eq!(starts, [0, 4096, 12288]);

        // A file system that keeps answering the same would loop forever.
        let stuck = all_extents(|_| Ok(vec![extent(0, 0, 0, 0)]));
        assert!(stuck.unwrap_err().to_string().contains("past byte 0"));
        let err = all_extents(|_| Err(anyhow!("nope"))).unwrap_err();
        assert_eq!(err.to_string(), "nope");
    }

    /// A file of `len` bytes in `dir`.
    fn file_in(dir: &Path, len: usize) -> (std::path::PathBuf, File) {
        let path = dir.join("data");
        let mut f = File::create(&path).unwrap();
        f.write_all(&vec![0x5a; len]).unwrap();
        (path.clone(), File::open(path).unwrap())
    }

    #[test]
    fn extents_of_a_real_file() {
        let dir = tempfile::tempdir().unwrap();
        let (_, file) = file_in(dir.path(), 1 << 20);
        let extents = match extents_of(&file) {
            Ok(extents) => extents,
            Err(e) => {
                // tmpfs, say: nothing to check here.
                assert!(e.to_string().contains("FIEMAP"), "{e}");
                eprintln!("skipped: {e}");
                return;
            }
        };
        // The data was still dirty: FIEMAP_FLAG_SYNC gave it its place.
        let ranges = extents.iter().map(sectors).collect::<Result<Vec<_>, _>>().unwrap();
        let total: u64 = merge(ranges).iter().map(|r| r.count).sum();
        assert!(total >= 2048, "{extents:?}");
        assert!(extents.last().unwrap().fe_flags & FIEMAP_EXTENT_LAST != 0);
        let (_, empty) = file_in(dir.path(), 0);
        assert_eq!(extents_of(&empty).unwrap(), []);
    }

    #[test]
    fn tmpfs_has_no_fiemap() {
        let Ok(dir) = tempfile::tempdir_in("/dev/shm") else {
            return;
        };
        let (_, file) = file_in(dir.path(), 4096);
        if let Err(e) = extents_of(&file) {
            let e = e.to_string();
            assert!(e.contains("cannot report file extents (no FIEMAP) (EOPNOTSUPP)"), "{e}");
        }
    }

    #[test]
    fn files_checked() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file) = file_in(dir.path(), 4096);
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // The file is its own "device" here: a real block device is needed
        // to get further, which the VM tests have.
        for (target, want) in [
            (dir.path().join("none"), "none: No such file or directory (ENOENT)"),
            (dir.path().to_path_buf(), "is not a regular file"),
            (fifo.clone(), "fifo is not a regular file"),
            (path.clone(), "data is not a block device"),
        ] {
            let err = file_sectors(&file, &path, &target).unwrap_err().to_string();
            assert!(err.ends_with(want), "{err}");
        }
    }
}
