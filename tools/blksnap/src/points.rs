// SPDX-License-Identifier: GPL-2.0
//! The restore points of a device in a backup directory, and reading one.
//!
//! Point ID of device NAME is three files: NAME.ID.qcow2, its image, whose
//! backing file is the previous point's image (none for a full point);
//! NAME.ID.sums, its checksums; NAME.ID.json, its metadata, written last.
//! Each is written under a temporary name and renamed once synced, so a
//! crash leaves at most files without metadata, which are not a point and
//! are removed by the next backup or prune.

use crate::copy::{NamedFile, NewFile, ReadAt, CHUNK};
use crate::failed;
use crate::meta::{self, Meta};
use crate::qcow2::{self, Cluster, CLUSTER_SIZE};
use crate::sums::{self, Sums};
use anyhow::{anyhow, bail, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const META_SUFFIX: &str = ".json";
const IMAGE_SUFFIX: &str = ".qcow2";
const SUMS_SUFFIX: &str = ".sums";
const PARTIAL_SUFFIX: &str = ".partial";

/// How a command uses a backup directory.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reads points (restore, verify, list): beside backups, not a prune.
    Read,
    /// Adds points (backup): beside readers, not another backup or a prune.
    Add,
    /// Rewrites and deletes points (prune): alone.
    Rewrite,
}

/// The file whose lock keeps two backups apart.
const ADD_LOCK: &str = ".blksnap-backup.lock";

/// Locks on a backup directory, held as long as this lives.
pub struct DirLock {
    _dir: Flock<File>,
    _add: Option<Flock<File>>,
}

/// Lock `file`, named `path` in errors, or fail at once if it is taken.
fn lock(file: File, path: &Path, exclusive: bool) -> Result<Flock<File>> {
    let how = if exclusive {
        FlockArg::LockExclusiveNonblock
    } else {
        FlockArg::LockSharedNonblock
    };
    match Flock::lock(file, how) {
        Ok(lock) => Ok(lock),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            bail!("{} is in use by another blksnap backup or prune", path.display())
        }
        Err((_, e)) => Err(failed("cannot lock", path.display(), e.into())),
    }
}

impl DirLock {
    pub fn take(dir: &Path, access: Access) -> Result<Self> {
        let file = File::open(dir).map_err(|e| failed("cannot open", dir.display(), e))?;
        let dir_lock = lock(file, dir, access == Access::Rewrite)?;
        let add = if access == Access::Add {
            let path = dir.join(ADD_LOCK);
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| failed("cannot open", path.display(), e))?;
            Some(lock(file, dir, true)?)
        } else {
            None
        };
        Ok(Self {
            _dir: dir_lock,
            _add: add,
        })
    }
}

/// The points of one device in a directory.
pub struct Store {
    dir: PathBuf,
    name: String,
}

impl Store {
    pub fn new(dir: &Path, name: &str) -> Self {
        Self {
            dir: dir.to_owned(),
            name: name.to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The path of `file`, a file name in the directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn image_name(&self, id: u32) -> String {
        format!("{}.{id}{IMAGE_SUFFIX}", self.name)
    }

    pub fn sums_name(&self, id: u32) -> String {
        format!("{}.{id}{SUMS_SUFFIX}", self.name)
    }

    fn meta_path(&self, id: u32) -> PathBuf {
        self.path(&format!("{}.{id}{META_SUFFIX}", self.name))
    }

    /// The point number of `file` if it is one of this device's files
    /// with `suffix`.
    fn id_of(&self, file: &str, suffix: &str) -> Option<u32> {
        let id = file
            .strip_prefix(&self.name)?
            .strip_prefix('.')?
            .strip_suffix(suffix)?;
        id.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| id.parse().ok())
            .flatten()
    }

    /// The file names in the directory; none if it does not exist.
    fn files(&self) -> Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            result => result.map_err(|e| failed("cannot read", self.dir.display(), e))?,
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| failed("cannot read", self.dir.display(), e))?;
            names.extend(entry.file_name().into_string().ok());
        }
        Ok(names)
    }

    /// The points, oldest first.
    pub fn points(&self) -> Result<Vec<Meta>> {
        let mut points = Vec::new();
        for file in self.files()? {
            if let Some(id) = self.id_of(&file, META_SUFFIX) {
                let meta = meta::load(&self.path(&file))?;
                if meta.id != id {
                    bail!("{}: it says it is point {}", self.path(&file).display(), meta.id);
                }
                points.push(meta);
            }
        }
        points.sort_by_key(|m| m.id);
        Ok(points)
    }

    /// The point `id`, or the latest if None.
    pub fn point(&self, id: Option<u32>) -> Result<Meta> {
        let points = self.points()?;
        let found = match id {
            None => points.last(),
            Some(id) => points.iter().find(|m| m.id == id),
        };
        found.cloned().ok_or_else(|| match id {
            None => anyhow!("no restore point of {} in {}", self.name, self.dir.display()),
            Some(id) => anyhow!("no restore point {id} of {} in {}", self.name, self.dir.display()),
        })
    }

    /// The number for a new point: after every point, and every file of one.
    pub fn next_id(&self) -> Result<u32> {
        let ids = self.files()?.into_iter().filter_map(|f| {
            [META_SUFFIX, IMAGE_SUFFIX, SUMS_SUFFIX]
                .iter()
                .find_map(|suffix| self.id_of(&f, suffix))
        });
        let last = ids.max().unwrap_or(0);
        last.checked_add(1)
            .ok_or_else(|| anyhow!("{}: no point number left after {last}", self.dir.display()))
    }

    /// Remove what interrupted backups and prunes left: temporary files, and
    /// images and checksums without metadata. Returns the names removed.
    pub fn clean(&self) -> Result<Vec<String>> {
        let files = self.files()?;
        let committed: Vec<u32> = files.iter().filter_map(|f| self.id_of(f, META_SUFFIX)).collect();
        let mut removed = Vec::new();
        for file in files {
            let orphan = [IMAGE_SUFFIX, SUMS_SUFFIX]
                .iter()
                .filter_map(|suffix| self.id_of(&file, suffix))
                .any(|id| !committed.contains(&id));
            let partial = file.starts_with(&format!("{}.", self.name)) && file.ends_with(PARTIAL_SUFFIX);
            if orphan || partial {
                let path = self.path(&file);
                std::fs::remove_file(&path).map_err(|e| failed("cannot remove", path.display(), e))?;
                removed.push(file);
            }
        }
        Ok(removed)
    }

    /// Save the metadata of a point whose files are on disk: it then exists.
    pub fn commit(&self, meta: &Meta) -> Result<()> {
        meta::save(&self.meta_path(meta.id), meta)
    }

    /// Delete a point no other point is built on: its metadata first, so
    /// that a crash leaves files that `clean` removes.
    pub fn remove(&self, meta: &Meta) -> Result<()> {
        let path = self.meta_path(meta.id);
        std::fs::remove_file(&path).map_err(|e| failed("cannot remove", path.display(), e))?;
        sync_dir(&self.dir)?;
        for file in [&meta.image, &meta.sums] {
            let path = self.path(file);
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(failed("cannot remove", path.display(), e))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The disk space the point's own files take (shared blocks counted).
    pub fn space(&self, meta: &Meta) -> u64 {
        [&meta.image, &meta.sums]
            .into_iter()
            .map(|f| self.path(f))
            .chain([self.meta_path(meta.id)])
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.blocks() * 512)
            .sum()
    }

    /// The point the image of `meta` is built on, if any.
    pub fn base_of(&self, meta: &Meta) -> Result<Option<u32>> {
        let file = NamedFile::open(&self.path(&meta.image), OpenOptions::new().read(true))?;
        let image = qcow2::Image::read(&file)?;
        Ok(image.backing_file.and_then(|b| self.id_of(&b, IMAGE_SUFFIX)))
    }
}

/// What a new point stores of its source.
pub enum Delta<'a> {
    /// Every block: a full point.
    Full,
    /// The blocks of `runs`, on top of the point `base`.
    Blocks {
        base: &'a Meta,
        base_sums: Sums,
        runs: Vec<Range<u64>>,
    },
    /// Every block whose checksum differs from the point `base`'s.
    Checksum { base: &'a Meta, base_sums: Sums },
}

/// What writing a point did.
pub struct Written {
    /// Bytes read from the source.
    pub read: u64,
    /// Bytes of data stored in the image.
    pub stored: u64,
}

/// The checksum block size for change tracking blocks of `block_size`: the
/// blocks an incremental backup copies are whole checksum blocks.
pub fn sum_block(block_size: u32) -> u64 {
    u64::from(block_size).max(CLUSTER_SIZE)
}

impl Store {
    /// Write the image and checksums of point `id` of `source`, a device of
    /// `capacity` bytes, in checksum blocks of `sum_block` bytes; `progress`
    /// is called with each length read and may stop the backup. The point
    /// exists once [`Store::commit`] records its metadata.
    pub fn write_point(
        &self,
        id: u32,
        source: &dyn ReadAt,
        capacity: u64,
        sum_block: u64,
        delta: Delta,
        progress: &mut dyn FnMut(u64) -> Result<()>,
    ) -> Result<Written> {
        let all = 0..capacity.div_ceil(sum_block);
        let (runs, mut sums, base, unchanged) = match delta {
            Delta::Full => (vec![all], Sums::new(sum_block, capacity), None, None),
            Delta::Blocks {
                base,
                base_sums,
                runs,
            } => (runs, base_sums, Some(base), None),
            Delta::Checksum { base, base_sums } => {
                (vec![all], base_sums.clone(), Some(base), Some(base_sums))
            }
        };
        if !sums.fits(sum_block, capacity) {
            bail!("the checksums of the base point do not fit the device");
        }
        let per_block = sum_block / CLUSTER_SIZE;
        let clusters = capacity.div_ceil(CLUSTER_SIZE);
        let candidates: Vec<Range<u64>> = runs
            .iter()
            .map(|r| r.start * per_block..(r.end * per_block).min(clusters))
            .collect();
        let file = NewFile::create(&self.path(&self.image_name(id)))?;
        let backing = base.map(|b| (b.image.as_str(), "qcow2"));
        let mut writer = qcow2::Writer::new(&file, capacity, backing, &candidates)?;
        let piece = (CHUNK as u64 / sum_block).max(1);
        let mut buf = vec![0u8; (piece * sum_block) as usize];
        let mut read = 0;
        for run in runs {
            for first in (run.start..run.end).step_by(piece as usize) {
                let last = (first + piece).min(run.end) - 1;
                let bytes = sums.range(first).start..sums.range(last).end;
                let data = &mut buf[..(bytes.end - bytes.start) as usize];
                source.read_at(data, bytes.start)?;
                for block in first..=last {
                    let range = sums.range(block);
                    let at = (range.start - bytes.start) as usize;
                    let block_data = &data[at..at + (range.end - range.start) as usize];
                    let sum = sums::of(block_data);
                    if unchanged.as_ref().is_some_and(|old| old.get(block) == sum) {
                        continue;
                    }
                    sums.set(block, sum);
                    for (i, cluster) in (0..).zip(block_data.chunks(CLUSTER_SIZE as usize)) {
                        writer.put(block * per_block + i, cluster)?;
                    }
                }
                read += data.len() as u64;
                progress(data.len() as u64)?;
            }
        }
        let stored = writer.finish()?;
        file.commit()?;
        sums.save(&self.path(&self.sums_name(id)))?;
        Ok(Written { read, stored })
    }

    /// The checksums of point `meta`, which must be of a device of
    /// `capacity` bytes in blocks of `sum_block`.
    pub fn sums(&self, meta: &Meta) -> Result<Sums> {
        let path = self.path(&meta.sums);
        let sums = Sums::load(&path)?;
        if !sums.fits(sum_block(meta.block_size), meta.device_capacity) {
            bail!(
                "{}: not the checksums of a device like point {}'s",
                path.display(),
                meta.id
            );
        }
        Ok(sums)
    }

    /// Open point `meta` to read it.
    pub fn chain(&self, meta: &Meta) -> Result<Chain> {
        let chain = Chain::open(&self.path(&meta.image))?;
        if chain.size() != meta.device_capacity {
            bail!(
                "{}: {} bytes, but point {} is of {} bytes",
                self.path(&meta.image).display(),
                chain.size(),
                meta.id,
                meta.device_capacity
            );
        }
        Ok(chain)
    }
}

/// The checksum blocks whose data in `chain` does not match `sums`, calling
/// `progress` as it reads.
pub fn mismatches(
    chain: &Chain,
    sums: &Sums,
    progress: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<Vec<u64>> {
    let mut bad = Vec::new();
    let mut buf = vec![0u8; sums.block_size as usize];
    for block in 0..sums.len() {
        let range = sums.range(block);
        let data = &mut buf[..(range.end - range.start) as usize];
        chain.read_at(data, range.start)?;
        if sums::of(data) != sums.get(block) {
            bad.push(block);
        }
        progress(data.len() as u64)?;
    }
    Ok(bad)
}

/// The device names with points in `dir`.
pub fn names(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = Store::new(dir, "")
        .files()?
        .iter()
        .filter_map(|f| {
            let (name, id) = f.strip_suffix(META_SUFFIX)?.rsplit_once('.')?;
            (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then(|| name.to_owned())
        })
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Make renames and removals in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| failed("cannot sync", dir.display(), e))
}

/// One image of a chain: a qcow2 image and its cluster map, or a raw one.
struct Level {
    file: NamedFile,
    map: Option<qcow2::Image>,
    size: u64,
}

/// The content of an image with its backing files: a restore point as it
/// restores, or a raw image.
pub struct Chain {
    /// The image first, then its backing file, and so on.
    levels: Vec<Level>,
}

/// The top images of a chain, to merge into one.
pub struct Top {
    /// The runs of guest clusters they hold, sorted, disjoint, not adjacent.
    pub runs: Vec<Range<u64>>,
    /// What the last of them is built on: file name and format.
    pub backing: Option<(String, String)>,
}

/// A bound on backing files, against loops.
const MAX_DEPTH: usize = 10_000;

impl Chain {
    pub fn open(path: &Path) -> Result<Self> {
        let mut levels = Vec::new();
        let mut next = Some(path.to_owned());
        while let Some(path) = next.take() {
            if levels.len() == MAX_DEPTH {
                bail!("{}: more than {MAX_DEPTH} backing files", path.display());
            }
            let file = NamedFile::open(&path, OpenOptions::new().read(true))?;
            if !qcow2::Image::is_qcow2(&file)? {
                let size = file.size()?;
                levels.push(Level {
                    file,
                    map: None,
                    size,
                });
                break;
            }
            let image = qcow2::Image::read(&file)?;
            if let Some(backing) = &image.backing_file {
                if !matches!(image.backing_format.as_deref(), None | Some("raw" | "qcow2")) {
                    bail!(
                        "{}: backing file format {:?} is not raw or qcow2",
                        path.display(),
                        image.backing_format
                    );
                }
                // A relative name is relative to the image's directory.
                next = Some(path.parent().unwrap_or(Path::new("")).join(backing));
            }
            let size = image.size;
            levels.push(Level {
                file,
                map: Some(image),
                size,
            });
        }
        Ok(Self { levels })
    }

    /// The size in bytes, the image's.
    pub fn size(&self) -> u64 {
        self.levels[0].size
    }

    /// The file name of the image `depth` backing files down.
    pub fn file_name(&self, depth: usize) -> Option<&str> {
        self.levels.get(depth)?.file.path().file_name()?.to_str()
    }

    /// The runs of guest clusters the first `depth` images hold, which must
    /// be qcow2 images of [`qcow2::CLUSTER_SIZE`] clusters, and the backing
    /// file (name and format) of the last of them: what merging them into
    /// one image needs.
    pub fn top_clusters(&self, depth: usize) -> Result<Top> {
        let mut runs = Vec::new();
        let mut backing = None;
        for level in &self.levels[..depth] {
            let image = match &level.map {
                Some(image) if image.cluster_size == qcow2::CLUSTER_SIZE => image,
                _ => bail!(
                    "{} is not a qcow2 image of {} byte clusters",
                    level.file.path().display(),
                    qcow2::CLUSTER_SIZE
                ),
            };
            runs.extend(image.runs());
            backing = image.backing_file.clone();
        }
        // The format as read, not as named: a backing file may name none.
        let format = |level: &Level| if level.map.is_some() { "qcow2" } else { "raw" };
        let backing = backing.zip(self.levels.get(depth).map(format));
        Ok(Top {
            runs: union(runs),
            backing: backing.map(|(name, format)| (name, format.to_owned())),
        })
    }

    /// Read what `at` holds into the start of `buf`, as far as one cluster
    /// of each image; returns the length read.
    fn read_piece(&self, buf: &mut [u8], at: u64) -> Result<usize> {
        let mut len = buf.len();
        for level in &self.levels {
            // A backing file shorter than the image reads as zeros past its end.
            if at >= level.size {
                break;
            }
            len = len.min((level.size - at) as usize);
            let Some(image) = &level.map else {
                level.file.read_at(&mut buf[..len], at)?;
                return Ok(len);
            };
            let within = at % image.cluster_size;
            len = len.min((image.cluster_size - within) as usize);
            match image.cluster(at / image.cluster_size) {
                Some(Cluster::Data(host)) => {
                    level.file.read_at(&mut buf[..len], host + within)?;
                    return Ok(len);
                }
                Some(Cluster::Zero) => break,
                None => continue,
            }
        }
        buf[..len].fill(0);
        Ok(len)
    }
}

/// The union of `runs`: sorted, and merged where they overlap or touch.
fn union(mut runs: Vec<Range<u64>>) -> Vec<Range<u64>> {
    runs.sort_unstable_by_key(|r| r.start);
    // dedup_by hands over each run with the last one kept.
    runs.dedup_by(|run, kept| {
        let joins = run.start <= kept.end;
        if joins {
            kept.end = kept.end.max(run.end);
        }
        joins
    });
    runs
}

impl ReadAt for Chain {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.size()) {
            bail!(
                "cannot read {} bytes at byte {offset} of {}: it is {} bytes",
                buf.len(),
                self.levels[0].file.path().display(),
                self.size()
            );
        }
        let mut done = 0;
        while done < buf.len() {
            done += self.read_piece(&mut buf[done..], offset + done as u64)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_of_runs() {
        assert_eq!(union(Vec::new()), []);
        let runs = vec![5..7, 0..2, 20..21, 2..3, 6..9, 10..12, 1..2];
        assert_eq!(union(runs), [0..3, 5..9, 10..12, 20..21]);
    }

    /// Write `path`, a qcow2 image of `size` bytes over `backing` that holds
    /// `runs`: zeros at cluster `zero`, bytes `seed` elsewhere.
    fn image(path: &Path, size: u64, backing: (&str, &str), runs: &[Range<u64>], zero: u64, seed: u8) {
        let file = NewFile::create(path).unwrap();
        let mut writer = qcow2::Writer::new(&file, size, Some(backing), runs).unwrap();
        let (data, zeros) = (vec![seed; CLUSTER_SIZE as usize], vec![0; CLUSTER_SIZE as usize]);
        for index in runs.iter().flat_map(|r| r.clone()) {
            writer
                .put(index, if index == zero { &zeros } else { &data })
                .unwrap();
        }
        writer.finish().unwrap();
        file.commit().unwrap();
    }

    #[test]
    fn top_clusters_merge_levels() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // Two L2 tables' worth of clusters, over a sparse raw base.
        let l2 = CLUSTER_SIZE / 8;
        let size = 2 * l2 * CLUSTER_SIZE;
        File::create(d.join("base.raw")).unwrap().set_len(size).unwrap();
        let p1 = [0..4, l2 - 1..l2 + 1];
        image(&d.join("p1.qcow2"), size, ("base.raw", "raw"), &p1, l2, 1);
        let p2 = [2..6, l2 + 1..l2 + 2, l2 + 5..l2 + 6];
        image(&d.join("p2.qcow2"), size, ("p1.qcow2", "qcow2"), &p2, 3, 2);
        let p3 = [6..7, l2 - 3..l2 - 1];
        image(&d.join("p3.qcow2"), size, ("p2.qcow2", "qcow2"), &p3, u64::MAX, 3);

        let chain = Chain::open(&d.join("p3.qcow2")).unwrap();
        let top = chain.top_clusters(2).unwrap();
        assert_eq!(top.runs, [2..7, l2 - 3..l2 - 1, l2 + 1..l2 + 2, l2 + 5..l2 + 6]);
        assert_eq!(top.backing, Some(("p1.qcow2".into(), "qcow2".into())));
        let top = chain.top_clusters(3).unwrap();
        assert_eq!(top.runs, [0..7, l2 - 3..l2 + 2, l2 + 5..l2 + 6]);
        assert_eq!(top.backing, Some(("base.raw".into(), "raw".into())));
        let err = chain.top_clusters(4).err().unwrap().to_string();
        assert!(err.contains("base.raw is not a qcow2 image"), "{err}");

        // Each cluster reads from the top level that holds it.
        let first_byte = |index: u64| {
            let mut byte = [0xff];
            chain.read_at(&mut byte, index * CLUSTER_SIZE).unwrap();
            byte[0]
        };
        let bytes: Vec<u8> = [0, 2, 3, 6, 7, l2 - 2, l2 - 1, l2, l2 + 5].map(first_byte).into();
        assert_eq!(bytes, [1, 2, 0, 3, 0, 3, 1, 0, 2]);
    }

    #[test]
    fn locks() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let busy = |access| {
            let err = DirLock::take(d, access).err().expect("locked twice");
            assert!(err.to_string().contains("is in use"), "{err}");
        };
        {
            let _backup = DirLock::take(d, Access::Add).unwrap();
            // Restores and lists go on beside a backup; not a second backup
            // nor a prune.
            let _read = DirLock::take(d, Access::Read).unwrap();
            busy(Access::Add);
            busy(Access::Rewrite);
        }
        {
            let _prune = DirLock::take(d, Access::Rewrite).unwrap();
            busy(Access::Read);
            busy(Access::Add);
        }
        let _read = DirLock::take(d, Access::Read).unwrap();
        let _again = DirLock::take(d, Access::Read).unwrap();
        busy(Access::Rewrite);
    }
}
