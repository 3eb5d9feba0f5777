// SPDX-License-Identifier: GPL-2.0
//! Reading backups back: restore and verify a restore point, and list and
//! prune the points of a backup directory.

use crate::backup::{PointArgs, Progress};
use crate::copy::{self, NamedFile};
use crate::meta::Meta;
use crate::points::{self, Access, Chain, DirLock, Store};
use crate::prune::{self, Policy};
use crate::{describe, errno, failed, print};
use anyhow::{anyhow, bail, Result};
use nix::errno::Errno;
use nix::sys::stat::{major, minor};
use serde::Serialize;
use std::fmt::{self, Display, Formatter};
use std::fs::OpenOptions;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// What `--backup` and `--point` name.
struct Selected {
    /// How to name it in reports.
    label: String,
    chain: Chain,
    /// The restore point, if it is one.
    point: Option<(Store, Meta)>,
    _lock: Option<DirLock>,
}

/// The directory, device name and number of a point's image path.
fn point_of_image(path: &Path) -> Option<(&Path, &str, u32)> {
    let file = path.file_name()?.to_str()?.strip_suffix(".qcow2")?;
    let (name, id) = file.rsplit_once('.')?;
    let id = id
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| id.parse().ok())??;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Some((dir, name, id))
}

fn select(args: &PointArgs) -> Result<Selected> {
    let path = &args.backup;
    let (dir, name, id) = if path.is_file() {
        match point_of_image(path) {
            Some((dir, name, id)) if args.point.is_none_or(|p| p == id) => (dir, name, Some(id)),
            _ if args.point.is_some() => bail!(
                "--point needs the backups of a device, DIR/NAME, but {} is a file",
                path.display()
            ),
            // Any image: a raw one, or a qcow2 one with its backing files.
            _ => {
                return Ok(Selected {
                    label: path.display().to_string(),
                    chain: Chain::open(path)?,
                    point: None,
                    _lock: None,
                })
            }
        }
    } else {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("{}: not DIR/NAME, the backups of a device", path.display()))?;
        (dir, name, args.point)
    };
    if !dir.is_dir() {
        bail!("{}: no such backup directory", dir.display());
    }
    let lock = DirLock::take(dir, Access::Read)?;
    let store = Store::new(dir, name);
    let meta = store.point(id)?;
    Ok(Selected {
        label: format!("restore point {} of {}", meta.id, dir.join(name).display()),
        chain: store.chain(&meta)?,
        point: Some((store, meta)),
        _lock: Some(lock),
    })
}

/// What restore reports.
#[derive(Serialize)]
struct Restored {
    backup: String,
    point: Option<u32>,
    device: String,
    bytes_written: u64,
    device_size: u64,
}

impl Display for Restored {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        writeln!(
            f,
            "restored {} bytes from {} to {} ({} bytes)",
            self.bytes_written, self.backup, self.device, self.device_size
        )
    }
}

pub fn restore(args: &PointArgs, device: &Path, force: bool, json: bool) -> Result<()> {
    let source = select(args)?;
    let target = open_target(device, force)?;
    let (len, room) = (source.chain.size(), target.size()?);
    if room < len {
        bail!(
            "cannot restore {} to {}: the backup is {len} bytes, the device only {room}",
            source.label,
            device.display()
        );
    }
    let progress = Progress::new("restore", len);
    let all = 0..len;
    // The device holds other data where the point has zeros: copy zeroes it.
    copy::copy(&source.chain, &target, &[all], &mut |n| {
        progress.0.inc(n);
        Ok(())
    })?;
    target.sync()?;
    drop(progress);
    print(
        json,
        &Restored {
            backup: source.label,
            point: source.point.map(|(_, m)| m.id),
            device: device.display().to_string(),
            bytes_written: len,
            device_size: room,
        },
    )
}

/// What verify reports when it compares a point with an image.
#[derive(Serialize)]
struct Compared {
    image: String,
    backup: String,
    point: Option<u32>,
    image_size: u64,
    backup_size: u64,
    identical: bool,
    first_difference: Option<u64>,
    bytes_differ: u64,
}

impl Display for Compared {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        write!(f, "{} and {}", self.image, self.backup)?;
        match self.first_difference {
            None => writeln!(f, " are identical: {} bytes", self.image_size),
            Some(first) => {
                let unit = if self.bytes_differ == 1 { "byte" } else { "bytes" };
                write!(
                    f,
                    " differ: {} {unit}, the first at byte {first}",
                    self.bytes_differ
                )?;
                if self.image_size != self.backup_size {
                    write!(f, " (sizes {} and {})", self.image_size, self.backup_size)?;
                }
                writeln!(f)
            }
        }
    }
}

/// What verify reports when it checks a point against its checksums.
#[derive(Serialize)]
struct Checked {
    backup: String,
    point: u32,
    bytes: u64,
    blocks: u64,
    blocks_bad: u64,
    first_bad_byte: Option<u64>,
}

impl Display for Checked {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        match self.first_bad_byte {
            None => writeln!(
                f,
                "{}: {} bytes, all {} blocks match their checksums",
                self.backup, self.bytes, self.blocks
            ),
            Some(first) => writeln!(
                f,
                "{}: {} of {} blocks do not match their checksums, the first at byte {first}",
                self.backup, self.blocks_bad, self.blocks
            ),
        }
    }
}

pub fn verify(image: Option<&Path>, args: &PointArgs, json: bool) -> Result<()> {
    let backup = select(args)?;
    let Some(image) = image else {
        let Some((store, meta)) = &backup.point else {
            bail!(
                "{} is not a restore point: it has no checksums; pass --image",
                backup.label
            );
        };
        let sums = store.sums(meta)?;
        let progress = Progress::new("verify", sums.capacity);
        let bad = points::mismatches(&backup.chain, &sums, &mut |n| {
            progress.0.inc(n);
            Ok(())
        })?;
        drop(progress);
        let report = Checked {
            backup: backup.label.clone(),
            point: meta.id,
            bytes: sums.capacity,
            blocks: sums.len(),
            blocks_bad: bad.len() as u64,
            first_bad_byte: bad.first().map(|&b| sums.range(b).start),
        };
        print(json, &report)?;
        if !bad.is_empty() {
            bail!("{} does not match its checksums", backup.label);
        }
        return Ok(());
    };
    let a = NamedFile::open(image, OpenOptions::new().read(true))?;
    let (image_size, backup_size) = (a.size()?, backup.chain.size());
    let common = image_size.min(backup_size);
    let progress = Progress::new("verify", common);
    let diff = copy::compare(&a, &backup.chain, common, &mut |n| {
        progress.0.inc(n);
        Ok(())
    })?;
    drop(progress);
    // The bytes past the end of the shorter one differ too.
    let extra = image_size.abs_diff(backup_size);
    let report = Compared {
        image: image.display().to_string(),
        backup: backup.label.clone(),
        point: backup.point.as_ref().map(|(_, m)| m.id),
        image_size,
        backup_size,
        identical: diff.bytes + extra == 0,
        first_difference: diff.first.or((extra > 0).then_some(common)),
        bytes_differ: diff.bytes + extra,
    };
    print(json, &report)?;
    if !report.identical {
        bail!("{} and {} differ", image.display(), backup.label);
    }
    Ok(())
}

/// One restore point, as `backup list` shows it.
#[derive(Serialize)]
struct Listed {
    name: String,
    #[serde(flatten)]
    meta: Meta,
    /// The point it is built on.
    base: Option<u32>,
    /// The disk space of its own files.
    space: u64,
}

#[derive(Serialize)]
#[serde(transparent)]
struct Listing(Vec<Listed>);

/// `bytes` in binary units, for people.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut value, mut unit) = (bytes as f64, 0);
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

impl Display for Listing {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        writeln!(
            f,
            "{:<12} {:>4}  {:<20}  {:<11}  {:>4}  {:>10}  {:>10}  {:>10}",
            "NAME", "ID", "TIME", "KIND", "BASE", "READ", "STORED", "SPACE"
        )?;
        for p in &self.0 {
            let base = p.base.map_or("-".into(), |b| b.to_string());
            writeln!(
                f,
                "{:<12} {:>4}  {:<20}  {:<11}  {:>4}  {:>10}  {:>10}  {:>10}",
                p.name,
                p.meta.id,
                prune::timestamp(p.meta.time),
                p.meta.kind.name(),
                base,
                human(p.meta.bytes_read),
                human(p.meta.bytes_stored),
                human(p.space)
            )?;
        }
        Ok(())
    }
}

/// The device names in `dir` to work on: `name`, or all.
fn selected_names(dir: &Path, name: Option<&str>) -> Result<Vec<String>> {
    let names = points::names(dir)?;
    match name {
        Some(name) if !names.iter().any(|n| n == name) => {
            bail!("no restore point of {name} in {}", dir.display())
        }
        Some(name) => Ok(vec![name.to_owned()]),
        None => Ok(names),
    }
}

pub fn list(dir: &Path, name: Option<&str>, json: bool) -> Result<()> {
    let _lock = DirLock::take(dir, Access::Read)?;
    let mut listing = Vec::new();
    for name in selected_names(dir, name)? {
        let store = Store::new(dir, &name);
        for meta in store.points()? {
            listing.push(Listed {
                base: store.base_of(&meta)?,
                space: store.space(&meta),
                name: name.clone(),
                meta,
            });
        }
    }
    print(json, &Listing(listing))
}

/// What prune reports for a device.
#[derive(Serialize)]
struct Pruned {
    name: String,
    dry_run: bool,
    kept: Vec<u32>,
    dropped: Vec<u32>,
    bytes_written: u64,
    /// Files interrupted backups and prunes left, removed.
    leftovers_removed: Vec<String>,
}

impl Display for Pruned {
    fn fmt(&self, f: &mut Formatter) -> fmt::Result {
        let ids = |ids: &[u32]| ids.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
        let (keep, drop) = if self.dry_run {
            ("would keep", "would drop")
        } else {
            ("kept", "dropped")
        };
        write!(f, "{}: {keep} {}", self.name, ids(&self.kept))?;
        if self.dropped.is_empty() {
            write!(f, "; nothing to drop")?;
        } else {
            write!(f, "; {drop} {}", ids(&self.dropped))?;
        }
        if !self.dry_run {
            write!(f, " ({} bytes merged)", self.bytes_written)?;
        }
        writeln!(f)?;
        for file in &self.leftovers_removed {
            writeln!(
                f,
                "{}: removed {file}, left by an interrupted backup or prune",
                self.name
            )?;
        }
        Ok(())
    }
}

pub fn prune(dir: &Path, name: Option<&str>, policy: Policy, dry_run: bool, json: bool) -> Result<()> {
    if [policy.last, policy.daily, policy.weekly, policy.monthly] == [0; 4] {
        bail!("say which points to keep: --keep-last, --keep-daily, --keep-weekly or --keep-monthly");
    }
    let _lock = DirLock::take(dir, if dry_run { Access::Read } else { Access::Rewrite })?;
    for name in selected_names(dir, name)? {
        let store = Store::new(dir, &name);
        let leftovers_removed = if dry_run { Vec::new() } else { store.clean()? };
        let outcome = prune::prune(&store, policy, dry_run)?;
        print(
            json,
            &Pruned {
                name,
                dry_run,
                kept: outcome.kept,
                dropped: outcome.dropped,
                bytes_written: outcome.written,
                leftovers_removed,
            },
        )?;
    }
    Ok(())
}

fn mount_point<'a>(mountinfo: &'a str, id: &str) -> Option<&'a str> {
    mountinfo.lines().find_map(|line| {
        // Mount id, parent id, major:minor, root, mount point, ...
        let mut fields = line.split(' ');
        (fields.nth(2)? == id).then(|| fields.nth(1)).flatten()
    })
}

/// Open `path` to restore onto: a block device that is not in use (unless
/// `force`), or a regular file.
fn open_target(path: &Path, force: bool) -> Result<NamedFile> {
    let stat = std::fs::metadata(path).map_err(|e| failed("cannot open", path.display(), e))?;
    let mut options = OpenOptions::new();
    options.write(true);
    if stat.file_type().is_block_device() {
        if !force {
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
                .map_err(|e| failed("cannot read", "/proc/self/mountinfo", e))?;
            let id = format!("{}:{}", major(stat.rdev()), minor(stat.rdev()));
            if let Some(at) = mount_point(&mountinfo, &id) {
                bail!(
                    "{} is mounted on {at}: unmount it, or pass --force",
                    path.display()
                );
            }
            // Exclusive: also fails if a partition of it is mounted or another
            // device (RAID, device mapper) holds it, and keeps it unmounted.
            options.custom_flags(libc::O_EXCL);
        }
    } else if !stat.is_file() {
        bail!("{} is neither a block device nor a regular file", path.display());
    }
    match options.open(path) {
        Ok(file) => Ok(NamedFile::new(file, path)),
        Err(e) if errno(&e) == Some(Errno::EBUSY) => Err(anyhow!(
            "cannot open {}: {}; pass --force to restore anyway",
            path.display(),
            describe(&e, Some("in use"))
        )),
        Err(e) => Err(failed("cannot open", path.display(), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Kind;
    use crate::points::{sum_block, Delta};
    use std::path::PathBuf;

    const MIB: u64 = 1 << 20;

    fn write(path: &Path, data: &[u8]) {
        std::fs::write(path, data).unwrap();
    }

    fn args(backup: &Path, point: Option<u32>) -> PointArgs {
        PointArgs {
            backup: backup.to_owned(),
            point,
        }
    }

    /// Back up `source` as point `id` of `store` (`delta` as given) and
    /// record it.
    fn back_up(store: &Store, source: &Path, id: u32, delta: Delta, kind: Kind) -> Meta {
        let file = NamedFile::open(source, OpenOptions::new().read(true)).unwrap();
        let size = file.size().unwrap();
        let written = store
            .write_point(id, &file, size, sum_block(65536), delta, &mut |_| Ok(()))
            .unwrap();
        let meta = Meta {
            id,
            device_capacity: size,
            time: 1_700_000_000 + u64::from(id),
            kind,
            bytes_read: written.read,
            bytes_stored: written.stored,
            image: store.image_name(id),
            sums: store.sums_name(id),
            ..crate::meta::tests::meta()
        };
        store.commit(&meta).unwrap();
        meta
    }

    /// A device's content: noise, with a zero stretch.
    fn device(len: usize, seed: u8) -> Vec<u8> {
        let mut data: Vec<u8> = (0..len)
            .map(|i| ((i * 7 + i / 4099) % 253) as u8 ^ seed)
            .collect();
        data[len / 3..len / 2].fill(0);
        data
    }

    #[test]
    fn points_restore_verify_and_prune() {
        let dir = tempfile::tempdir().unwrap();
        let (src, target) = (dir.path().join("src"), dir.path().join("target"));
        let b = dir.path().join("b");
        std::fs::create_dir(&b).unwrap();
        let store = Store::new(&b, "loop0");
        // Not a multiple of the cluster size.
        let len = (3 * MIB + 4096) as usize;
        let mut contents = vec![device(len, 1)];
        write(&src, &contents[0]);
        let mut metas = vec![back_up(&store, &src, 1, Delta::Full, Kind::Full)];

        // Point 2: block 1 and the last, partial one changed, told so.
        let mut data = contents[0].clone();
        data[65536..65536 + 100].fill(0xee);
        data[len - 10..].fill(0xdd);
        write(&src, &data);
        contents.push(data.clone());
        let base_sums = store.sums(&metas[0]).unwrap();
        let last = (len as u64).div_ceil(65536) - 1;
        let runs = vec![1..2, last..last + 1];
        let delta = Delta::Blocks {
            base: &metas[0],
            base_sums,
            runs,
        };
        metas.push(back_up(&store, &src, 2, delta, Kind::Incremental));
        assert_eq!(metas[1].bytes_read, 65536 + 4096);
        assert_eq!(metas[1].bytes_stored, 65536 + 4096);

        // Point 3 by checksums: a block zeroed, one changed.
        data[0..65536].fill(0);
        data[10 * 65536 + 5] ^= 1;
        write(&src, &data);
        contents.push(data.clone());
        let delta = Delta::Checksum {
            base: &metas[1],
            base_sums: store.sums(&metas[1]).unwrap(),
        };
        metas.push(back_up(&store, &src, 3, delta, Kind::Checksum));
        assert_eq!(metas[2].bytes_read, len as u64);
        // The zeroed block takes no data.
        assert_eq!(metas[2].bytes_stored, 65536);
        assert_eq!(store.base_of(&metas[2]).unwrap(), Some(2));
        assert_eq!(store.base_of(&metas[0]).unwrap(), None);

        // Every point restores as it was, and matches its checksums.
        let prefix = b.join("loop0");
        for (i, content) in contents.iter().enumerate() {
            let id = i as u32 + 1;
            write(&target, &vec![0xaa; len + 512]);
            restore(&args(&prefix, Some(id)), &target, false, true).unwrap();
            let got = std::fs::read(&target).unwrap();
            assert!(got[..len] == content[..], "point {id}");
            assert!(got[len..].iter().all(|&x| x == 0xaa));
            verify(None, &args(&prefix, Some(id)), true).unwrap();
            write(&src, content);
            verify(Some(&src), &args(&prefix, Some(id)), true).unwrap();
            // And by its image's name, as a standalone qcow2 chain.
            let image = b.join(format!("loop0.{id}.qcow2"));
            verify(Some(&src), &args(&image, None), true).unwrap();
        }
        // The latest by default.
        verify(Some(&src), &args(&prefix, None), true).unwrap();
        verify(Some(&src), &args(&prefix, Some(2)), true).unwrap_err();
        let err = verify(None, &args(&prefix, Some(9)), true).unwrap_err();
        assert!(err.to_string().contains("no restore point 9 of loop0"), "{err}");

        // A corrupted image is caught by its checksums.
        let image = b.join("loop0.2.qcow2");
        let saved = std::fs::read(&image).unwrap();
        let mut bad = saved.clone();
        // In the data of block 1, before the last, partial cluster's.
        let at = bad.len() - 66_000;
        bad[at] ^= 0x40;
        write(&image, &bad);
        let err = verify(None, &args(&prefix, Some(2)), true).unwrap_err();
        assert!(err.to_string().contains("does not match its checksums"), "{err}");
        write(&image, &saved);

        // Prune to the last one: it keeps its content, built on nothing.
        let policy = Policy {
            last: 1,
            ..Policy::default()
        };
        let outcome = prune::prune(&store, policy, true).unwrap();
        assert_eq!((outcome.kept, outcome.dropped), (vec![3], vec![1, 2]));
        assert_eq!(store.points().unwrap().len(), 3);
        let outcome = prune::prune(&store, policy, false).unwrap();
        assert_eq!((outcome.kept, outcome.dropped), (vec![3], vec![1, 2]));
        let left = store.points().unwrap();
        assert_eq!(left, [metas[2].clone()]);
        assert_eq!(store.base_of(&left[0]).unwrap(), None);
        write(&src, &contents[2]);
        verify(Some(&src), &args(&prefix, None), true).unwrap();
        verify(None, &args(&prefix, None), true).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&b)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["loop0.3.json", "loop0.3.qcow2", "loop0.3.sums"]);
        assert_eq!(store.next_id().unwrap(), 4);
    }

    #[test]
    fn prune_merges_into_the_next_kept() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let b = dir.path().join("b");
        std::fs::create_dir(&b).unwrap();
        let store = Store::new(&b, "vda");
        let len = (2 * MIB) as usize;
        let mut data = device(len, 5);
        let mut contents = Vec::new();
        let mut metas: Vec<Meta> = Vec::new();
        for id in 1..=5u32 {
            if id > 1 {
                // Each point changes its own block and block 0.
                data[id as usize * 65536] ^= 0xff;
                data[0] = id as u8;
            }
            write(&src, &data);
            contents.push(data.clone());
            let meta = match metas.last() {
                None => back_up(&store, &src, id, Delta::Full, Kind::Full),
                Some(base) => {
                    let delta = Delta::Blocks {
                        base,
                        base_sums: store.sums(base).unwrap(),
                        runs: vec![0..1, u64::from(id)..u64::from(id) + 1],
                    };
                    back_up(&store, &src, id, delta, Kind::Incremental)
                }
            };
            metas.push(meta);
        }
        // Keep the last two: 1, 2 and 3 merge into 4, 5 stays on 4.
        let policy = Policy {
            last: 2,
            ..Policy::default()
        };
        let outcome = prune::prune(&store, policy, false).unwrap();
        assert_eq!((outcome.kept, outcome.dropped), (vec![4, 5], vec![1, 2, 3]));
        let prefix = b.join("vda");
        for id in [4, 5] {
            write(&src, &contents[id as usize - 1]);
            verify(Some(&src), &args(&prefix, Some(id)), true).unwrap();
            verify(None, &args(&prefix, Some(id)), true).unwrap();
        }
        assert_eq!(store.base_of(&metas[4]).unwrap(), Some(4));
        assert_eq!(store.base_of(&metas[3]).unwrap(), None);
        // A further backup builds on the merged chain.
        assert_eq!(store.next_id().unwrap(), 6);
    }

    #[test]
    fn leftovers_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path();
        let store = Store::new(b, "loop0");
        for name in ["loop0.1.json", "loop0.1.qcow2", "loop0.1.sums"] {
            write(&b.join(name), b"x");
        }
        for name in [
            "loop0.2.qcow2",
            "loop0.2.sums.partial",
            "loop0.3.json.partial",
            "loop01.2.qcow2",
            "other",
        ] {
            write(&b.join(name), b"y");
        }
        assert_eq!(store.next_id().unwrap(), 3);
        let mut removed = store.clean().unwrap();
        removed.sort();
        assert_eq!(
            removed,
            ["loop0.2.qcow2", "loop0.2.sums.partial", "loop0.3.json.partial"]
        );
        assert_eq!(store.next_id().unwrap(), 2);
        assert_eq!(points::names(b).unwrap(), ["loop0"]);
    }

    #[test]
    fn raw_images_restore() {
        let dir = tempfile::tempdir().unwrap();
        let backup = dir.path().join("x.img");
        let target = dir.path().join("target");
        let mut data = vec![0u8; 3 << 20];
        data[1 << 20] = 7;
        write(&backup, &data);
        // Zeros in the image overwrite the target's old data.
        write(&target, &vec![0xaa; 4 << 20]);
        restore(&args(&backup, None), &target, false, true).unwrap();
        let got = std::fs::read(&target).unwrap();
        assert!(got[..data.len()] == data[..]);
        assert!(got[data.len()..].iter().all(|&b| b == 0xaa));
        verify(Some(&target), &args(&backup, None), false).unwrap_err();
        let err = verify(None, &args(&backup, None), false).unwrap_err();
        assert!(err.to_string().contains("has no checksums"), "{err}");
        let err = verify(None, &args(&backup, Some(1)), false).unwrap_err();
        assert!(err.to_string().contains("--point needs"), "{err}");

        write(&target, &[0; 100]);
        let err = restore(&args(&backup, None), &target, false, false).unwrap_err();
        assert!(err.to_string().contains("the device only 100"), "{err}");
        let err = restore(&args(&backup, None), dir.path(), true, false).unwrap_err();
        assert!(
            err.to_string()
                .contains("neither a block device nor a regular file"),
            "{err}"
        );
        let err = restore(
            &args(&PathBuf::from("/nonexistent/x"), None),
            &target,
            false,
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("no such backup directory"), "{err}");
    }

    #[test]
    fn compare_report() {
        let report = Compared {
            image: "a".into(),
            backup: "b".into(),
            point: None,
            image_size: 10,
            backup_size: 8,
            identical: false,
            first_difference: Some(8),
            bytes_differ: 2,
        };
        assert_eq!(
            report.to_string(),
            "a and b differ: 2 bytes, the first at byte 8 (sizes 10 and 8)\n"
        );
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(10 * MIB + MIB / 2), "10.5 MiB");
        assert_eq!(
            point_of_image(Path::new("/b/vg-root.12.qcow2")),
            Some((Path::new("/b"), "vg-root", 12))
        );
        assert_eq!(
            point_of_image(Path::new("x.1.qcow2")),
            Some((Path::new("."), "x", 1))
        );
        assert_eq!(point_of_image(Path::new("/b/x.img")), None);
        assert_eq!(point_of_image(Path::new("/b/x.y.qcow2")), None);
    }

    #[test]
    fn mount_points() {
        let mountinfo = "\
22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
95 22 7:0 / /mnt/a rw,relatime shared:50 - ext4 /dev/loop0 rw
96 22 7:10 /sub /mnt/b rw - ext4 /dev/loop10 rw
";
        assert_eq!(mount_point(mountinfo, "7:0"), Some("/mnt/a"));
        assert_eq!(mount_point(mountinfo, "7:10"), Some("/mnt/b"));
        assert_eq!(mount_point(mountinfo, "7:1"), None);
        assert_eq!(mount_point("", "7:0"), None);
        assert_eq!(mount_point("garbage\n1 2\n", "7:0"), None);
    }
}
