// SPDX-License-Identifier: GPL-2.0
//! qcow2 images, the format of incremental restore points: an overlay that
//! holds the clusters changed since the previous point and names that point
//! as its backing file, so that standard tools (`qemu-img`, `qemu-nbd`) can
//! read a chain of points as well as this tool can.
//!
//! [`Writer`] makes a version 3 image in one pass; [`Image`] reads the header
//! and cluster map of ours or of qemu's. The format is qemu's
//! docs/interop/qcow2.txt; only what restore points need is supported.

use crate::copy::{is_zero, NamedFile};
use anyhow::{anyhow, bail, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::ops::Range;

/// The cluster size of the images we write: 64 KiB, qemu's default.
pub const CLUSTER_SIZE: u64 = 1 << CLUSTER_BITS;
const CLUSTER_BITS: u32 = 16;
/// Entries of one of our L2 tables, so guest clusters per L1 entry.
const L2_ENTRIES: u64 = CLUSTER_SIZE / 8;
/// 16-bit refcounts (refcount_order 4) in one of our refcount blocks.
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER_SIZE / 2;

const MAGIC: &[u8; 4] = b"QFI\xfb";
const V2_HEADER_LEN: u64 = 72;
const V3_HEADER_LEN: u64 = 104;
const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;

const INCOMPAT_DIRTY: u64 = 1 << 0;
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_COMPRESSION_TYPE: u64 = 1 << 3;
const INCOMPAT_EXTENDED_L2: u64 = 1 << 4;

/// In L1 and L2 entries: the refcount is 1, the cluster may be written in
/// place.
const COPIED: u64 = 1 << 63;
const COMPRESSED: u64 = 1 << 62;
/// In L2 entries of version 3: the cluster reads as zeros, whatever the
/// backing file holds.
const ZERO: u64 = 1;
/// Bits 9-55 of L1 and L2 entries: a host offset.
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;

/// qemu's limits: 32 MiB of L1 table, 1023 bytes of backing file name.
const MAX_L1_ENTRIES: u64 = (32 << 20) / 8;
const MAX_BACKING_NAME: u64 = 1023;

/// What an image holds for one guest cluster. Clusters absent from a map
/// come from the backing file, or read as zeros without one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cluster {
    /// The data is at this offset in the image file.
    Data(u64),
    /// Zeros.
    Zero,
}

/// A qcow2 image's header and cluster map.
#[derive(Debug)]
pub struct Image {
    /// The virtual size in bytes.
    pub size: u64,
    pub cluster_size: u64,
    /// As stored: qemu resolves a relative name from the image's directory.
    pub backing_file: Option<String>,
    pub backing_format: Option<String>,
    /// The L2 tables by L1 index, as far as the virtual size, validated and
    /// decoded: 0 for a cluster absent, [`ZERO`] for zeros, else the offset
    /// of its data, which is cluster aligned and past the header, so neither.
    /// None for a table absent or of absent clusters only: memory goes to
    /// the tables that map something, 8 bytes a guest cluster, as in qemu.
    tables: Vec<Option<Box<[u64]>>>,
}

fn be32(buf: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}

fn be64(buf: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

fn set16(buf: &mut [u8], at: usize, value: u16) {
    buf[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

fn set32(buf: &mut [u8], at: usize, value: u32) {
    buf[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

fn set64(buf: &mut [u8], at: usize, value: u64) {
    buf[at..at + 8].copy_from_slice(&value.to_be_bytes());
}

/// The error for an image `Image::read` cannot use.
fn bad(file: &NamedFile, what: impl Display) -> anyhow::Error {
    anyhow!(
        "{} is not a qcow2 image this tool can read: {what}",
        file.path().display()
    )
}

impl Image {
    /// Parse the header and cluster map of `file`.
    ///
    /// Versions 2 and 3 with any cluster size are read. Refused, as their
    /// clusters could not be used as plain data: encryption, compressed
    /// clusters, extended L2 entries, an external data file, unknown
    /// incompatible features, and the corrupt bit. The dirty bit is accepted:
    /// it only means stale refcounts, which reading does not use. Internal
    /// snapshots are ignored: the map is the active one's.
    pub fn read(file: &NamedFile) -> Result<Image> {
        let file_len = file.size()?;
        if file_len < V2_HEADER_LEN {
            return Err(bad(file, "it is too short"));
        }
        let mut start = [0u8; V2_HEADER_LEN as usize];
        file.read_at(&mut start, 0)?;
        if &start[..4] != MAGIC {
            return Err(bad(file, "no qcow2 magic"));
        }
        let version = be32(&start, 4);
        if !(2..=3).contains(&version) {
            return Err(bad(file, format!("version {version} is not supported")));
        }
        let cluster_bits = be32(&start, 20);
        if !(9..=21).contains(&cluster_bits) {
            return Err(bad(file, format!("cluster_bits {cluster_bits} is invalid")));
        }
        let cluster_size = 1u64 << cluster_bits;
        if file_len < cluster_size {
            return Err(bad(file, "it is truncated"));
        }
        // The header, its extensions and the backing file name are all in
        // cluster 0.
        let mut head = vec![0u8; cluster_size as usize];
        file.read_at(&mut head, 0)?;
        if be32(&head, 32) != 0 {
            return Err(bad(file, "it is encrypted"));
        }
        let (header_len, incompatible) = match version {
            2 => (V2_HEADER_LEN, 0),
            _ => (u64::from(be32(&head, 100)), be64(&head, 72)),
        };
        if version == 3 && (header_len < V3_HEADER_LEN || header_len % 8 != 0 || header_len > cluster_size) {
            return Err(bad(file, format!("header length {header_len} is invalid")));
        }
        for (bit, what) in [
            (INCOMPAT_CORRUPT, "it is marked corrupt"),
            (INCOMPAT_DATA_FILE, "it has an external data file"),
            (INCOMPAT_EXTENDED_L2, "it has extended L2 entries"),
        ] {
            if incompatible & bit != 0 {
                return Err(bad(file, what));
            }
        }
        let unknown = incompatible & !(INCOMPAT_DIRTY | INCOMPAT_COMPRESSION_TYPE);
        if unknown != 0 {
            return Err(bad(file, format!("unknown incompatible features {unknown:#x}")));
        }

        let name_offset = be64(&head, 8);
        let name_len = u64::from(be32(&head, 16));
        let (backing_file, extensions_end) = if name_offset == 0 {
            (None, cluster_size)
        } else {
            if name_offset < header_len
                || name_len > MAX_BACKING_NAME
                || name_offset
                    .checked_add(name_len)
                    .is_none_or(|end| end > cluster_size)
            {
                return Err(bad(file, "the backing file name is out of bounds"));
            }
            let name = &head[name_offset as usize..(name_offset + name_len) as usize];
            (Some(utf8(file, name, "backing file name")?), name_offset)
        };
        let backing_format = backing_format(file, &head[header_len as usize..extensions_end as usize])?;

        let size = be64(&head, 24);
        let l1_size = u64::from(be32(&head, 36));
        let l1_offset = be64(&head, 40);
        let guest_clusters = size.div_ceil(cluster_size);
        let l2_entries = cluster_size / 8;
        let l1_needed = guest_clusters.div_ceil(l2_entries);
        if l1_size > MAX_L1_ENTRIES || l1_needed > MAX_L1_ENTRIES {
            return Err(bad(file, "the L1 table is too large"));
        }
        if l1_size < l1_needed {
            return Err(bad(file, "the L1 table is too small for the virtual size"));
        }
        // Entries past those the virtual size needs are for VM state: unused.
        if l1_needed > 0 {
            check_table(
                file,
                "the L1 table",
                l1_offset,
                l1_needed * 8,
                cluster_size,
                file_len,
            )?;
        }
        let mut l1 = vec![0u8; (l1_needed * 8) as usize];
        file.read_at(&mut l1, l1_offset)?;

        let mut tables = Vec::with_capacity(l1_needed as usize);
        // An L2 table used twice would let a small file describe a huge map.
        let mut seen = BTreeSet::new();
        let mut table = vec![0u8; cluster_size as usize];
        let zero_flag = if version == 3 { ZERO } else { 0 };
        for (l1_index, first) in (0..).zip((0..guest_clusters).step_by(l2_entries as usize)) {
            let entry = be64(&l1, l1_index * 8);
            if entry & !(OFFSET_MASK | COPIED) != 0 {
                return Err(bad(file, format!("L1 entry {l1_index} has reserved bits")));
            }
            let offset = entry & OFFSET_MASK;
            if offset == 0 {
                tables.push(None);
                continue;
            }
            check_table(file, "an L2 table", offset, cluster_size, cluster_size, file_len)?;
            if !seen.insert(offset) {
                return Err(bad(file, format!("the L2 table at {offset} is used twice")));
            }
            file.read_at(&mut table, offset)?;
            let last = guest_clusters.min(first + l2_entries);
            let mut entries = Vec::with_capacity((last - first) as usize);
            for (index, raw) in (first..last).zip(table.chunks_exact(8)) {
                let entry = be64(raw, 0);
                if entry & COMPRESSED != 0 {
                    return Err(bad(file, format!("cluster {index} is compressed")));
                }
                if entry & !(OFFSET_MASK | COPIED | zero_flag) != 0 {
                    return Err(bad(
                        file,
                        format!("the L2 entry of cluster {index} has reserved bits"),
                    ));
                }
                let offset = entry & OFFSET_MASK;
                entries.push(if entry & zero_flag != 0 {
                    ZERO
                } else if offset != 0 {
                    // Guest bytes past the virtual size need not be there.
                    let len = cluster_size.min(size - index * cluster_size);
                    check_table(file, "a data cluster", offset, len, cluster_size, file_len)?;
                    offset
                } else {
                    0
                });
            }
            tables.push(
                entries
                    .iter()
                    .any(|&e| e != 0)
                    .then(|| entries.into_boxed_slice()),
            );
        }
        Ok(Image {
            size,
            cluster_size,
            backing_file,
            backing_format,
            tables,
        })
    }

    /// What the image holds for guest cluster `index`; None also past the
    /// virtual size.
    pub fn cluster(&self, index: u64) -> Option<Cluster> {
        let l2_entries = self.cluster_size / 8;
        let table = self
            .tables
            .get(usize::try_from(index / l2_entries).ok()?)?
            .as_deref()?;
        match *table.get((index % l2_entries) as usize)? {
            0 => None,
            ZERO => Some(Cluster::Zero),
            offset => Some(Cluster::Data(offset)),
        }
    }

    /// The runs of guest clusters the image holds, data or zeros: sorted,
    /// disjoint and not adjacent.
    pub fn runs(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        let l2_entries = self.cluster_size / 8;
        let mut held = (0..)
            .zip(&self.tables)
            .filter_map(move |(l1_index, table)| Some((l1_index * l2_entries, table.as_deref()?)))
            .flat_map(|(first, table)| {
                (first..)
                    .zip(table)
                    .filter(|&(_, &entry)| entry != 0)
                    .map(|(index, _)| index)
            })
            .peekable();
        std::iter::from_fn(move || {
            let start = held.next()?;
            let mut end = start + 1;
            while held.next_if_eq(&end).is_some() {
                end += 1;
            }
            Some(start..end)
        })
    }

    /// Whether `file` starts with the qcow2 magic.
    pub fn is_qcow2(file: &NamedFile) -> Result<bool> {
        if file.size()? < MAGIC.len() as u64 {
            return Ok(false);
        }
        let mut magic = [0u8; 4];
        file.read_at(&mut magic, 0)?;
        Ok(&magic == MAGIC)
    }
}

fn utf8(file: &NamedFile, bytes: &[u8], what: &str) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| bad(file, format!("the {what} is not UTF-8")))
}

/// Check that `len` bytes of metadata or data at `offset` are cluster
/// aligned, past the header and within the file.
fn check_table(
    file: &NamedFile,
    what: &str,
    offset: u64,
    len: u64,
    cluster_size: u64,
    file_len: u64,
) -> Result<()> {
    // Cluster sizes are powers of two.
    if offset & (cluster_size - 1) != 0 || offset < cluster_size {
        return Err(bad(file, format!("{what} is at an invalid offset {offset}")));
    }
    if offset.checked_add(len).is_none_or(|end| end > file_len) {
        return Err(bad(
            file,
            format!("{what} at {offset} is past the end of the file"),
        ));
    }
    Ok(())
}

/// The backing format named in the header `extensions`, if any.
fn backing_format(file: &NamedFile, extensions: &[u8]) -> Result<Option<String>> {
    let mut format = None;
    let mut at = 0;
    while at + 8 <= extensions.len() {
        let kind = be32(extensions, at);
        let len = be32(extensions, at + 4) as usize;
        if kind == EXT_END {
            break;
        }
        let data = extensions[at + 8..]
            .get(..len)
            .ok_or_else(|| bad(file, format!("header extension {kind:#x} is truncated")))?;
        if kind == EXT_BACKING_FORMAT {
            format = Some(utf8(file, data, "backing format")?);
        }
        at += 8 + len.next_multiple_of(8);
    }
    Ok(format)
}

/// A new qcow2 image written in one pass: data clusters as they are put,
/// each with its L2 entry, the rest of the metadata at [`Writer::finish`].
///
/// Layout: header, L1 table, refcount table, refcount blocks, L2 tables,
/// then data clusters in the order they are put. The metadata is sized for
/// every candidate cluster up front, so nothing ever moves.
pub struct Writer<'a> {
    file: &'a NamedFile,
    size: u64,
    /// Cluster 0, complete.
    header: Vec<u8>,
    l1_offset: u64,
    l1_entries: u64,
    refcount_table_offset: u64,
    refcount_table_clusters: u64,
    refcount_blocks: u64,
    /// By L1 index, those covering some candidate.
    tables: BTreeMap<u64, Table>,
    /// Where the next data cluster goes.
    next_data: u64,
    /// Bytes of guest data stored.
    stored: u64,
}

/// An L2 table, whose entries are written to the file as clusters are put.
struct Table {
    offset: u64,
    /// Bitmaps by entry: which are candidates, which were put.
    candidates: Vec<u64>,
    put: Vec<u64>,
}

fn bit(bits: &[u64], i: u64) -> bool {
    bits[(i / 64) as usize] & (1 << (i % 64)) != 0
}

fn set_bit(bits: &mut [u64], i: u64) {
    bits[(i / 64) as usize] |= 1 << (i % 64);
}

impl<'a> Writer<'a> {
    /// Start an image in `file`, new and empty, of `size` bytes (a multiple
    /// of 512), over `backing`: a file name, stored as given (qemu resolves
    /// it from the image's directory), and its format ("raw", "qcow2").
    /// `candidates` are the runs of guest cluster indices that may be put,
    /// sorted and disjoint; they may touch. Empty runs (start >= end) are
    /// ignored, as iterating them would be.
    pub fn new(
        file: &'a NamedFile,
        size: u64,
        backing: Option<(&str, &str)>,
        candidates: &[Range<u64>],
    ) -> Result<Self> {
        let path = file.path().display();
        if size & 511 != 0 {
            bail!("{path}: the image size {size} is not a multiple of 512");
        }
        let guest_clusters = size.div_ceil(CLUSTER_SIZE);
        let l1_entries = guest_clusters.div_ceil(L2_ENTRIES);
        if l1_entries > MAX_L1_ENTRIES {
            bail!("{path}: the image size {size} is too large for qcow2");
        }
        let runs = || candidates.iter().filter(|r| !r.is_empty());
        let mut end = 0;
        for run in runs() {
            if run.start < end {
                bail!("{path}: the candidate runs are not sorted and disjoint");
            }
            end = run.end;
        }
        if end > guest_clusters {
            bail!("{path}: a candidate cluster is past the end of the image");
        }
        if file.size()? != 0 {
            bail!("{path} is not empty");
        }

        // Each table gets its offset once the metadata before them is sized.
        let mut tables = BTreeMap::new();
        for run in runs() {
            let mut start = run.start;
            while start < run.end {
                let l1_index = start / L2_ENTRIES;
                let end = run.end.min((l1_index + 1) * L2_ENTRIES);
                let table = tables.entry(l1_index).or_insert_with(|| Table {
                    offset: 0,
                    candidates: vec![0; (L2_ENTRIES / 64) as usize],
                    put: vec![0; (L2_ENTRIES / 64) as usize],
                });
                for index in start..end {
                    set_bit(&mut table.candidates, index % L2_ENTRIES);
                }
                start = end;
            }
        }
        let table_count = tables.len() as u64;
        let candidate_count: u64 = runs().map(|r| r.end - r.start).sum();

        // Refcount blocks count every cluster, themselves and the table
        // included: grow both until they cover the total.
        let l1_clusters = (l1_entries * 8).div_ceil(CLUSTER_SIZE);
        let fixed = 1 + l1_clusters + table_count + candidate_count;
        let (mut refcount_table_clusters, mut refcount_blocks) = (1, 0);
        loop {
            let total = fixed + refcount_table_clusters + refcount_blocks;
            let blocks = total.div_ceil(REFCOUNTS_PER_BLOCK);
            let table_clusters = (blocks * 8).div_ceil(CLUSTER_SIZE).max(1);
            if (table_clusters, blocks) == (refcount_table_clusters, refcount_blocks) {
                break;
            }
            (refcount_table_clusters, refcount_blocks) = (table_clusters, blocks);
        }
        let l1_offset = CLUSTER_SIZE;
        let refcount_table_offset = l1_offset + l1_clusters * CLUSTER_SIZE;
        let tables_offset =
            refcount_table_offset + (refcount_table_clusters + refcount_blocks) * CLUSTER_SIZE;

        for (table, offset) in tables
            .values_mut()
            .zip((tables_offset..).step_by(CLUSTER_SIZE as usize))
        {
            table.offset = offset;
        }
        let mut writer = Self {
            file,
            size,
            header: Vec::new(),
            l1_offset,
            l1_entries,
            refcount_table_offset,
            refcount_table_clusters,
            refcount_blocks,
            tables,
            next_data: tables_offset + table_count * CLUSTER_SIZE,
            stored: 0,
        };
        writer.header = writer.header(backing)?;
        Ok(writer)
    }

    /// Cluster 0: the version 3 header, a backing format extension, the
    /// end of extensions, and the backing file name.
    fn header(&self, backing: Option<(&str, &str)>) -> Result<Vec<u8>> {
        let mut h = vec![0u8; V3_HEADER_LEN as usize];
        h[..4].copy_from_slice(MAGIC);
        set32(&mut h, 4, 3);
        set32(&mut h, 20, CLUSTER_BITS);
        set64(&mut h, 24, self.size);
        // Bounded by MAX_L1_ENTRIES, as the refcount table is.
        set32(&mut h, 36, self.l1_entries as u32);
        set64(&mut h, 40, self.l1_offset);
        set64(&mut h, 48, self.refcount_table_offset);
        set32(&mut h, 56, self.refcount_table_clusters as u32);
        set32(&mut h, 96, 4);
        set32(&mut h, 100, V3_HEADER_LEN as u32);
        if let Some((_, format)) = backing {
            h.extend_from_slice(&EXT_BACKING_FORMAT.to_be_bytes());
            h.extend_from_slice(&(format.len() as u32).to_be_bytes());
            h.extend_from_slice(format.as_bytes());
            h.resize(h.len().next_multiple_of(8), 0);
        }
        h.extend_from_slice(&EXT_END.to_be_bytes());
        h.extend_from_slice(&[0; 4]);
        if let Some((name, _)) = backing {
            if name.is_empty() || name.len() as u64 > MAX_BACKING_NAME {
                bail!(
                    "{}: the backing file name {name:?} is empty or too long",
                    self.file.path().display()
                );
            }
            let end = h.len() as u64;
            set64(&mut h, 8, end);
            set32(&mut h, 16, name.len() as u32);
            h.extend_from_slice(name.as_bytes());
        }
        if h.len() as u64 > CLUSTER_SIZE {
            bail!("{}: the backing format is too long", self.file.path().display());
        }
        Ok(h)
    }

    /// Where the L2 entry of candidate `index` is in the file, if it was not
    /// put yet.
    fn entry_offset(&self, index: u64) -> Result<u64> {
        let slot = index % L2_ENTRIES;
        match self.tables.get(&(index / L2_ENTRIES)) {
            Some(table) if bit(&table.candidates, slot) => {
                if bit(&table.put, slot) {
                    bail!("{}: cluster {index} is put twice", self.file.path().display());
                }
                Ok(table.offset + slot * 8)
            }
            _ => bail!(
                "{}: cluster {index} is not a candidate",
                self.file.path().display()
            ),
        }
    }

    fn set_entry(&mut self, index: u64, at: u64, entry: u64) -> Result<()> {
        self.file.write_at(&entry.to_be_bytes(), at)?;
        if let Some(table) = self.tables.get_mut(&(index / L2_ENTRIES)) {
            set_bit(&mut table.put, index % L2_ENTRIES);
        }
        Ok(())
    }

    /// Store guest cluster `index`, a candidate: `data` is [`CLUSTER_SIZE`]
    /// bytes, fewer for a last cluster cut by the virtual size. Zeros are
    /// recorded as a zero cluster, as the backing file may hold data there.
    pub fn put(&mut self, index: u64, data: &[u8]) -> Result<()> {
        let at = self.entry_offset(index)?;
        let len = CLUSTER_SIZE.min(self.size - index * CLUSTER_SIZE);
        if data.len() as u64 != len {
            bail!(
                "{}: cluster {index} is {len} bytes, not {}",
                self.file.path().display(),
                data.len()
            );
        }
        if is_zero(data) {
            return self.set_entry(index, at, ZERO);
        }
        // A short last cluster is padded by finish's set_len or by the
        // clusters after it.
        let host = self.next_data;
        self.file.write_at(data, host)?;
        self.set_entry(index, at, host | COPIED)?;
        self.next_data += CLUSTER_SIZE;
        self.stored += len;
        Ok(())
    }

    /// Write the L1 table, the refcounts and the header, and give the file
    /// its final length; candidates never put read from the backing file.
    /// Does not sync. Returns the bytes of guest data stored.
    pub fn finish(self) -> Result<u64> {
        let mut l1 = vec![0u8; (self.l1_entries * 8) as usize];
        for (&l1_index, table) in &self.tables {
            set64(&mut l1, l1_index as usize * 8, table.offset | COPIED);
        }
        self.file.write_at(&l1, self.l1_offset)?;

        // Every cluster from the header to the last data cluster is used
        // once; clusters sized for candidates never put are not in the file.
        let used = self.next_data / CLUSTER_SIZE;
        let mut refcount_table = vec![0u8; (self.refcount_table_clusters * CLUSTER_SIZE) as usize];
        let mut block = vec![0u8; CLUSTER_SIZE as usize];
        let blocks_offset = self.refcount_table_offset + self.refcount_table_clusters * CLUSTER_SIZE;
        for b in 0..self.refcount_blocks {
            let offset = blocks_offset + b * CLUSTER_SIZE;
            set64(&mut refcount_table, b as usize * 8, offset);
            let counted = used
                .saturating_sub(b * REFCOUNTS_PER_BLOCK)
                .min(REFCOUNTS_PER_BLOCK);
            block.fill(0);
            for i in 0..counted as usize {
                set16(&mut block, i * 2, 1);
            }
            self.file.write_at(&block, offset)?;
        }
        self.file.write_at(&refcount_table, self.refcount_table_offset)?;
        // Last: until then the file is no qcow2 image.
        self.file.write_at(&self.header, 0)?;
        self.file.set_len(self.next_data)?;
        Ok(self.stored)
    }
}

#[cfg(test)]
// Arrays of one run of clusters are meant, not arrays of its clusters.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::path::Path;
    use std::process::Command;

    const CS: u64 = CLUSTER_SIZE;

    fn open(path: &Path) -> NamedFile {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true);
        NamedFile::open(path, &options).unwrap()
    }

    /// Bytes that are never zero, different for each `seed`.
    fn noise(len: u64, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8 ^ seed | 1).collect()
    }

    /// Write an image of `size` bytes putting `data` (None: zeros) over
    /// `candidates`; returns what finish returns.
    fn write(
        path: &Path,
        size: u64,
        backing: Option<(&str, &str)>,
        candidates: &[Range<u64>],
        puts: &[(u64, Option<Vec<u8>>)],
    ) -> u64 {
        let file = open(path);
        let mut writer = Writer::new(&file, size, backing, candidates).unwrap();
        for (index, data) in puts {
            match data {
                Some(data) => writer.put(*index, data).unwrap(),
                None => writer
                    .put(*index, &vec![0; CS.min(size - index * CS) as usize])
                    .unwrap(),
            }
        }
        writer.finish().unwrap()
    }

    /// The guest bytes of cluster `index` of `image`, if it has data.
    fn data(file: &NamedFile, image: &Image, index: u64) -> Option<Vec<u8>> {
        match image.cluster(index)? {
            Cluster::Data(offset) => {
                let len = image.cluster_size.min(image.size - index * image.cluster_size);
                let mut buf = vec![0; len as usize];
                file.read_at(&mut buf, offset).unwrap();
                Some(buf)
            }
            Cluster::Zero => None,
        }
    }

    /// Whether qemu's `tool` is installed; says so when not.
    fn have(tool: &str) -> bool {
        let found = Command::new(tool).arg("--version").output().is_ok();
        if !found {
            println!("{tool} is not installed: skipping the part of this test that needs it");
        }
        found
    }

    fn run(dir: &Path, tool: &str, args: &[&str]) -> String {
        let out = Command::new(tool).args(args).current_dir(dir).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{tool} {args:?}: {text}");
        text
    }

    /// A sparse raw file of `size` bytes, a backing file for qemu-img check.
    fn sparse(path: &Path, size: u64) {
        open(path).set_len(size).unwrap();
    }

    /// qemu-img check finds neither errors nor leaks (its status says both).
    fn qemu_check(dir: &Path, name: &str) {
        if have("qemu-img") {
            let text = run(dir, "qemu-img", &["check", name]);
            assert!(text.contains("No errors were found"), "{text}");
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.qcow2");
        let (a, b) = (noise(CS, 1), noise(CS, 2));
        let zeros = vec![0; CS as usize];
        let puts = [
            (0, Some(a.clone())),
            (2, Some(zeros)),
            (3, None),
            (5, Some(b.clone())),
        ];
        let stored = write(
            &path,
            10 * CS,
            Some(("base.raw", "raw")),
            &[0..1, 2..4, 5..6, 9..10],
            &puts,
        );
        assert_eq!(stored, 2 * CS);

        let file = open(&path);
        assert!(Image::is_qcow2(&file).unwrap());
        let image = Image::read(&file).unwrap();
        assert_eq!(image.size, 10 * CS);
        assert_eq!(image.cluster_size, CS);
        assert_eq!(image.backing_file.as_deref(), Some("base.raw"));
        assert_eq!(image.backing_format.as_deref(), Some("raw"));
        // Data and zeros alike are held; 9, a candidate never put, is not.
        assert_eq!(image.runs().collect::<Vec<_>>(), [0..1, 2..4, 5..6]);
        let kinds: Vec<_> = (0..12).map(|i| image.cluster(i)).collect();
        assert!(matches!(kinds[0], Some(Cluster::Data(_))));
        assert!(matches!(kinds[5], Some(Cluster::Data(_))));
        assert_eq!(kinds[2..4], [Some(Cluster::Zero); 2]);
        for absent in [1, 4, 6, 7, 8, 9, 10, 11] {
            assert_eq!(kinds[absent], None, "cluster {absent}");
        }
        assert_eq!(image.cluster(u64::MAX), None);
        assert_eq!(data(&file, &image, 0), Some(a));
        assert_eq!(data(&file, &image, 5), Some(b));
        sparse(&dir.path().join("base.raw"), 10 * CS);
        qemu_check(dir.path(), "p.qcow2");
    }

    #[test]
    fn no_backing_and_no_puts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.qcow2");
        assert_eq!(write(&path, 512, None, &[0..1], &[]), 0);
        let image = Image::read(&open(&path)).unwrap();
        assert_eq!((image.runs().next(), image.cluster(0)), (None, None));
        assert_eq!(
            (image.size, image.backing_file, image.backing_format),
            (512, None, None)
        );
        qemu_check(dir.path(), "p.qcow2");
        assert!(!Image::is_qcow2(&open(&dir.path().join("empty"))).unwrap());
    }

    #[test]
    fn last_partial_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.qcow2");
        let size = 3 * CS + 4096;
        let tail = noise(4096, 3);
        // Put before an earlier cluster: the padding is then between data.
        let puts = [(3, Some(tail.clone())), (1, Some(noise(CS, 4)))];
        assert_eq!(write(&path, size, None, &[1..2, 3..4], &puts), CS + 4096);
        let file = open(&path);
        let image = Image::read(&file).unwrap();
        assert_eq!(data(&file, &image, 3), Some(tail));
        assert_eq!(data(&file, &image, 1), Some(noise(CS, 4)));
        qemu_check(dir.path(), "p.qcow2");
    }

    #[test]
    fn several_l2_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.qcow2");
        // Over 1.5 GiB, sparse: L2 tables for L1 entries 0, 1 and 3.
        let last = 3 * L2_ENTRIES + 10;
        let size = last * CS + 1024;
        let candidates = [
            0..1,
            5..6,
            L2_ENTRIES + 7..L2_ENTRIES + 8,
            3 * L2_ENTRIES..3 * L2_ENTRIES + 1,
            last..last + 1,
        ];
        let puts = [
            (0, Some(noise(CS, 5))),
            (L2_ENTRIES + 7, Some(noise(CS, 6))),
            (3 * L2_ENTRIES, None),
            (last, Some(noise(1024, 7))),
        ];
        write(&path, size, Some(("base.raw", "raw")), &candidates, &puts);
        let file = open(&path);
        let image = Image::read(&file).unwrap();
        assert_eq!(image.size, size);
        let runs: Vec<_> = image.runs().collect();
        let at = 3 * L2_ENTRIES;
        assert_eq!(
            runs,
            [0..1, L2_ENTRIES + 7..L2_ENTRIES + 8, at..at + 1, last..last + 1]
        );
        assert_eq!(image.cluster(at), Some(Cluster::Zero));
        assert_eq!(data(&file, &image, L2_ENTRIES + 7), Some(noise(CS, 6)));
        assert_eq!(data(&file, &image, last), Some(noise(1024, 7)));
        // Header, L1, refcount table and block, 3 L2 tables, 3 data clusters.
        assert_eq!(file.size().unwrap(), 10 * CS);
        sparse(&dir.path().join("base.raw"), size);
        qemu_check(dir.path(), "p.qcow2");
    }

    #[test]
    fn runs_across_l2_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.qcow2");
        let l2 = L2_ENTRIES;
        // A run over the boundary of tables 0 and 1, one touching it, and
        // one in table 2 never put: its table is in the file, all absent.
        let candidates = [l2 - 2..l2 + 2, l2 + 2..l2 + 3, 2 * l2 + 5..2 * l2 + 9];
        let file = open(&path);
        let mut writer = Writer::new(&file, 3 * l2 * CS, None, &candidates).unwrap();
        for index in [l2 - 3, l2 + 3, 2 * l2 + 4, 3 * l2] {
            let err = writer
                .put(index, &vec![0; CS as usize])
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("not a candidate"), "{index}: {err}");
        }
        writer.put(l2 - 2, &noise(CS, 16)).unwrap();
        writer.put(l2 - 1, &noise(CS, 17)).unwrap();
        writer.put(l2, &vec![0; CS as usize]).unwrap();
        writer.put(l2 + 1, &vec![0; CS as usize]).unwrap();
        writer.put(l2 + 2, &noise(CS, 18)).unwrap();
        assert_eq!(writer.finish().unwrap(), 3 * CS);

        let image = Image::read(&file).unwrap();
        assert_eq!(image.runs().collect::<Vec<_>>(), [l2 - 2..l2 + 3]);
        assert_eq!(data(&file, &image, l2 - 1), Some(noise(CS, 17)));
        assert_eq!(image.cluster(l2 + 1), Some(Cluster::Zero));
        assert_eq!(data(&file, &image, l2 + 2), Some(noise(CS, 18)));
        assert_eq!(image.cluster(2 * l2 + 5), None);
        let kept: Vec<bool> = image.tables.iter().map(Option::is_some).collect();
        assert_eq!(kept, [true, true, false]);
        // Header, L1, refcount table and block, 3 L2 tables, 3 data clusters.
        assert_eq!(file.size().unwrap(), 10 * CS);
        qemu_check(dir.path(), "p.qcow2");
    }

    /// Memory goes by L2 table, not by cluster: a 2 TiB image is cheap to
    /// write and read when it holds little, as is declaring every cluster a
    /// candidate.
    #[test]
    fn huge_sparse_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.qcow2");
        let size = 2 << 40;
        let clusters = size / CS;
        let middle = clusters / 2 + 3;
        let puts = [(middle, Some(noise(CS, 19)))];
        assert_eq!(write(&path, size, None, &[middle..middle + 1], &puts), CS);
        let file = open(&path);
        let image = Image::read(&file).unwrap();
        assert_eq!(image.size, size);
        assert_eq!(image.runs().collect::<Vec<_>>(), [middle..middle + 1]);
        assert_eq!(data(&file, &image, middle), Some(noise(CS, 19)));
        assert_eq!(image.tables.len() as u64, clusters / L2_ENTRIES);
        let entries: usize = image.tables.iter().flatten().map(|t| t.len()).sum();
        assert_eq!(entries as u64, L2_ENTRIES);
        // Header, L1, refcount table and block, 1 L2 table, 1 data cluster.
        assert_eq!(file.size().unwrap(), 6 * CS);
        qemu_check(dir.path(), "p.qcow2");

        let full = open(&dir.path().join("full.qcow2"));
        let writer = Writer::new(&full, size, None, &[0..clusters]).unwrap();
        assert_eq!(writer.tables.len() as u64, clusters / L2_ENTRIES);
    }

    #[test]
    fn refcounts_span_several_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.qcow2");
        // More clusters than one refcount block covers, in a sparse file.
        let count = REFCOUNTS_PER_BLOCK + 10;
        let file = open(&path);
        let mut writer = Writer::new(&file, count * CS, None, &[0..count]).unwrap();
        let one = noise(CS, 8);
        for index in (0..count).step_by(997) {
            writer.put(index, &one).unwrap();
        }
        // The data region ends early: the blocks cover more than is used.
        writer.finish().unwrap();
        let image = Image::read(&file).unwrap();
        assert_eq!(image.runs().count() as u64, count.div_ceil(997));
        qemu_check(dir.path(), "p.qcow2");
    }

    #[test]
    fn writer_refuses_misuse() {
        let dir = tempfile::tempdir().unwrap();
        let file = open(&dir.path().join("p.qcow2"));
        let new = |size, backing, candidates: &[Range<u64>]| {
            Writer::new(&file, size, backing, candidates)
                .err()
                .unwrap()
                .to_string()
        };
        assert!(new(1000, None, &[]).contains("multiple of 512"));
        assert!(new(4 * CS, None, &[2..3, 1..2]).contains("not sorted"));
        assert!(new(4 * CS, None, &[1..3, 2..4]).contains("not sorted"));
        assert!(new(4 * CS, None, &[1..2, 1..2]).contains("not sorted"));
        assert!(new(4 * CS, None, &[3..5]).contains("past the end"));
        // Empty runs are ignored, wherever they are.
        assert!(new(4 * CS, None, &[9..9, 2..3, 0..0, 1..2]).contains("not sorted"));
        let long = "x".repeat(1024);
        assert!(new(CS, Some((&long, "raw")), &[]).contains("too long"));
        assert!(new(CS, Some(("", "raw")), &[]).contains("too long"));
        let format = "f".repeat(CS as usize);
        assert!(new(CS, Some(("b", &format)), &[]).contains("too long"));

        let mut writer = Writer::new(&file, 2 * CS + 512, None, &[0..1, 2..2, 2..3]).unwrap();
        let put = |w: &mut Writer, index, len| w.put(index, &noise(len, 9)).err().unwrap().to_string();
        assert!(put(&mut writer, 1, CS).contains("not a candidate"));
        assert!(put(&mut writer, 7, CS).contains("not a candidate"));
        assert!(put(&mut writer, 2, CS).contains("512 bytes"));
        writer.put(2, &noise(512, 9)).unwrap();
        assert!(put(&mut writer, 2, 512).contains("put twice"));
        assert!(writer.put(2, &vec![0; 512]).is_err());
        writer.finish().unwrap();
        let err = Writer::new(&file, CS, None, &[]).err().unwrap().to_string();
        assert!(err.contains("not empty"), "{err}");
    }

    type Change = Box<dyn FnOnce(&mut Vec<u8>)>;

    /// The error reading a copy of `image` changed by `change`.
    fn read_error(dir: &Path, image: &[u8], change: impl FnOnce(&mut Vec<u8>)) -> String {
        let path = dir.join("bad.qcow2");
        let mut bytes = image.to_vec();
        change(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        let err = Image::read(&open(&path)).err().unwrap().to_string();
        assert!(err.contains(&*path.to_string_lossy()), "{err}");
        err
    }

    #[test]
    fn bad_images_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.qcow2");
        let puts = [(1, Some(noise(CS, 10)))];
        write(&path, 4 * CS, Some(("base.raw", "raw")), &[1..2], &puts);
        let image = std::fs::read(&path).unwrap();
        let l2 = be64(&image, CS as usize) & OFFSET_MASK;
        let dir = dir.path();
        let cases: [(&str, Change); 18] = [
            ("too short", Box::new(|b| b.truncate(20))),
            ("truncated", Box::new(|b| b.truncate(1000))),
            ("magic", Box::new(|b| b[0] = b'X')),
            ("version 4", Box::new(|b| set32(b, 4, 4))),
            ("cluster_bits 30", Box::new(|b| set32(b, 20, 30))),
            ("encrypted", Box::new(|b| set32(b, 32, 1))),
            ("corrupt", Box::new(|b| set64(b, 72, INCOMPAT_CORRUPT))),
            ("external data", Box::new(|b| set64(b, 72, INCOMPAT_DATA_FILE))),
            ("extended L2", Box::new(|b| set64(b, 72, INCOMPAT_EXTENDED_L2))),
            ("features 0x400", Box::new(|b| set64(b, 72, 1 << 10))),
            ("header length", Box::new(|b| set32(b, 100, 20))),
            ("truncated", Box::new(|b| set32(b, 108, u32::MAX))),
            ("name is out", Box::new(|b| set64(b, 8, u64::MAX - 2))),
            ("too large", Box::new(|b| set32(b, 36, u32::MAX))),
            ("too small", Box::new(|b| set32(b, 36, 0))),
            ("invalid offset", Box::new(|b| set64(b, 40, CS + 8))),
            (
                "past the end",
                Box::new(|b| set64(b, CS as usize, (1 << 40) | COPIED)),
            ),
            (
                "compressed",
                Box::new(move |b| set64(b, l2 as usize + 8, COMPRESSED | CS)),
            ),
        ];
        for (expected, change) in cases {
            let err = read_error(dir, &image, change);
            assert!(err.contains(expected), "{expected}: {err}");
        }
        // Hostile sizes: a huge virtual size over a small L1 table, or two
        // L1 entries sharing an L2 table.
        let err = read_error(dir, &image, |b| set64(b, 24, 1 << 60));
        assert!(err.contains("too large"), "{err}");
        let err = read_error(dir, &image, |b| {
            set64(b, 24, 2 * L2_ENTRIES * CS);
            set32(b, 36, 2);
            set64(b, CS as usize + 8, l2 | COPIED);
        });
        assert!(err.contains("used twice"), "{err}");
        // The dirty bit alone is fine.
        let err = read_error(dir, &image, |b| set64(b, 72, INCOMPAT_DIRTY | 1 << 10));
        assert!(err.contains("features 0x400"), "{err}");
    }

    #[test]
    fn qemu_reads_a_chain() {
        if !have("qemu-img") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let size = 6 * CS + 512;
        let mut expected = noise(size, 11);
        std::fs::write(dir.path().join("base.raw"), &expected).unwrap();
        // Point 1 over the raw base: data, a zero cluster, the short tail.
        let puts = [(1, Some(noise(CS, 12))), (2, None), (6, Some(noise(512, 13)))];
        let p1 = dir.path().join("p1.qcow2");
        write(&p1, size, Some(("base.raw", "raw")), &[1..3, 4..5, 6..7], &puts);
        // Point 2 over point 1: zeros put as data over point 1's data.
        let puts = [(1, Some(vec![0; CS as usize])), (3, Some(noise(CS, 14)))];
        let p2 = dir.path().join("p2.qcow2");
        write(&p2, size, Some(("p1.qcow2", "qcow2")), &[1..2, 3..4], &puts);

        let cs = CS as usize;
        expected[cs..2 * cs].fill(0);
        expected[2 * cs..3 * cs].fill(0);
        expected[3 * cs..4 * cs].copy_from_slice(&noise(CS, 14));
        expected[6 * cs..].copy_from_slice(&noise(512, 13));
        for name in ["p1.qcow2", "p2.qcow2"] {
            qemu_check(dir.path(), name);
        }
        run(
            dir.path(),
            "qemu-img",
            &["convert", "-O", "raw", "p2.qcow2", "out.raw"],
        );
        assert!(std::fs::read(dir.path().join("out.raw")).unwrap() == expected);
    }

    #[test]
    fn reads_qemu_images() {
        if !have("qemu-img") || !have("qemu-io") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let size = 5 * CS + 4096;
        std::fs::write(dir.path().join("base.raw"), noise(size, 15)).unwrap();
        let args = [
            "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", "x.qcow2",
        ];
        run(dir.path(), "qemu-img", &args);
        let writes = [
            "write -P 0x5a 64k 64k",
            "write -z 192k 64k",
            "write -P 0x33 320k 4k",
        ];
        for command in writes {
            run(dir.path(), "qemu-io", &["-c", command, "x.qcow2"]);
        }
        let file = open(&dir.path().join("x.qcow2"));
        let image = Image::read(&file).unwrap();
        assert_eq!(image.size, size);
        assert_eq!(image.backing_file.as_deref(), Some("base.raw"));
        assert_eq!(image.backing_format.as_deref(), Some("raw"));
        assert_eq!(image.runs().collect::<Vec<_>>(), [1..2, 3..4, 5..6]);
        assert_eq!(image.cluster(3), Some(Cluster::Zero));
        assert_eq!(data(&file, &image, 1), Some(vec![0x5a; CS as usize]));
        assert_eq!(data(&file, &image, 5), Some(vec![0x33; 4096]));
    }
}
