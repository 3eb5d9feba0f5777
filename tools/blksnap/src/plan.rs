// SPDX-License-Identifier: GPL-2.0
//! What a backup copies: every block of the device, or only the blocks that
//! the change tracking table marks as changed since the previous backup.
//! No I/O here: the decisions are tested on the host.

use crate::meta::Meta;
use crate::Cbtinfo;
use std::ops::Range;

/// What is known of the latest restore point of a device.
pub enum Previous {
    /// No point: the device was never backed up there.
    Missing,
    /// Points whose metadata cannot be read, and why.
    Unusable(String),
    /// The latest point's metadata, and why its image or checksums cannot
    /// be built upon, if they cannot.
    Found { meta: Meta, problem: Option<String> },
}

/// How to back up a device.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Copy every block; `reason` says why an incremental backup that was
    /// asked for cannot be done.
    Full { reason: Option<String> },
    /// Copy the blocks changed since the point `base`.
    Incremental { base: Meta },
    /// Read every block and store those whose checksum differs from the
    /// point `base`'s; `reason` says why change tracking cannot tell.
    Checksum { base: Meta, reason: String },
}

/// What to do when change tracking cannot give an incremental backup.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fallback {
    /// A checksum incremental backup, when the previous point allows one.
    pub checksum: bool,
    /// Otherwise a full one.
    pub full: bool,
}

/// How many blocks of `block_size` bytes cover `capacity` bytes, the last
/// one possibly partial.
pub fn block_count(capacity: u64, block_size: u32) -> u64 {
    capacity.div_ceil(u64::from(block_size))
}

/// Whether the geometry the module reports is one the table can be read
/// with: a power-of-two block size and a table that covers the device.
pub fn check_geometry(now: &Cbtinfo) -> Result<(), String> {
    if !now.block_size.is_power_of_two() {
        return Err(format!(
            "the tracking block size {} is not a power of two",
            now.block_size
        ));
    }
    let needed = block_count(now.device_capacity, now.block_size);
    if u64::from(now.block_count) != needed {
        return Err(format!(
            "the tracking table has {} blocks, but {} bytes take {needed} blocks of {}",
            now.block_count, now.device_capacity, now.block_size
        ));
    }
    Ok(())
}

/// Why change tracking cannot tell what changed since the point `meta`, at
/// tracking state `now` (read right after this backup's snapshot was taken).
fn untracked(meta: &Meta, now: &Cbtinfo) -> Option<String> {
    // The table only tells changes within one generation; a new one starts
    // when tracking starts again (attach), resets, or wraps at 256 snapshots.
    if meta.generation_id != now.generation_id {
        return Some(format!(
            "generation changed since the last backup (was {}, now {})",
            meta.generation_id, now.generation_id
        ));
    }
    if meta.changes_number >= now.changes_number {
        return Some(format!(
            "the last backup is of snapshot {}, not older than this one, {}",
            meta.changes_number, now.changes_number
        ));
    }
    None
}

/// Why the point `meta` cannot be built upon at all at tracking state `now`.
fn unlike(meta: &Meta, now: &Cbtinfo) -> Option<String> {
    if meta.device_capacity != now.device_capacity {
        return Some(format!(
            "the device size changed since the last backup (was {}, now {} bytes)",
            meta.device_capacity, now.device_capacity
        ));
    }
    if meta.block_size != now.block_size {
        return Some(format!(
            "the tracking block size changed since the last backup (was {}, now {} bytes)",
            meta.block_size, now.block_size
        ));
    }
    None
}

/// Plan an incremental backup on top of `previous`; when change tracking
/// cannot tell what changed, fall back as `fallback` allows, or refuse with
/// the reason.
pub fn plan_incremental(previous: Previous, now: &Cbtinfo, fallback: Fallback) -> Result<Plan, String> {
    let reason = match previous {
        Previous::Missing => "there is no previous backup".into(),
        Previous::Unusable(why) => format!("the previous backup's metadata is unusable: {why}"),
        Previous::Found {
            problem: Some(why), ..
        } => why,
        Previous::Found { meta, problem: None } => match unlike(&meta, now) {
            Some(reason) => reason,
            None => match untracked(&meta, now) {
                None => return Ok(Plan::Incremental { base: meta }),
                Some(reason) if fallback.checksum => return Ok(Plan::Checksum { base: meta, reason }),
                Some(reason) => reason,
            },
        },
    };
    if fallback.full {
        Ok(Plan::Full { reason: Some(reason) })
    } else {
        Err(reason)
    }
}

/// Runs of consecutive blocks whose table byte says that they changed after
/// snapshot `since`. A byte is the number of the snapshot since which its
/// block changed (0: not since tracking started), so within a generation a
/// plain comparison finds them.
pub fn changed_blocks(table: &[u8], since: u8) -> Vec<Range<u64>> {
    let mut runs: Vec<Range<u64>> = Vec::new();
    for (block, _) in (0u64..).zip(table).filter(|&(_, &number)| number > since) {
        match runs.last_mut() {
            Some(run) if run.end == block => run.end += 1,
            _ => runs.push(block..block + 1),
        }
    }
    runs
}

/// Runs of blocks of `block_size` bytes as runs of the larger blocks of
/// `coarse` bytes that hold them (both powers of two).
pub fn coarsen(blocks: &[Range<u64>], block_size: u32, coarse: u64) -> Vec<Range<u64>> {
    let ratio = coarse / u64::from(block_size);
    let mut runs: Vec<Range<u64>> = Vec::new();
    for b in blocks {
        let run = b.start / ratio..b.end.div_ceil(ratio);
        match runs.last_mut() {
            Some(last) if last.end >= run.start => last.end = last.end.max(run.end),
            _ => runs.push(run),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Kind;

    const GEN: &str = "00112233445566778899aabbccddeeff";
    const OTHER_GEN: &str = "ffeeddccbbaa99887766554433221100";
    const MIB: u64 = 1 << 20;

    fn now(changes_number: u8) -> Cbtinfo {
        Cbtinfo {
            device_capacity: 256 * MIB,
            block_size: 65536,
            block_count: 4096,
            generation_id: GEN.into(),
            changes_number,
        }
    }

    fn meta(changes_number: u8) -> Meta {
        Meta {
            device_capacity: 256 * MIB,
            block_size: 65536,
            generation_id: GEN.into(),
            changes_number,
            kind: Kind::Full,
            ..crate::meta::tests::meta()
        }
    }

    fn found(meta: Meta) -> Previous {
        Previous::Found { meta, problem: None }
    }

    /// The refusal reason for `previous` at `now`, or panic.
    fn refusal(previous: Previous, now: &Cbtinfo) -> String {
        plan_incremental(previous, now, Fallback::default()).unwrap_err()
    }

    #[test]
    fn incremental_on_a_good_base() {
        let plan = plan_incremental(found(meta(3)), &now(5), Fallback::default()).unwrap();
        assert_eq!(plan, Plan::Incremental { base: meta(3) });
    }

    #[test]
    fn refusals_name_the_reason() {
        assert_eq!(refusal(Previous::Missing, &now(2)), "there is no previous backup");
        assert!(refusal(Previous::Unusable("bad json".into()), &now(2)).ends_with("unusable: bad json"));
        let other = Cbtinfo {
            generation_id: OTHER_GEN.into(),
            ..now(1)
        };
        assert_eq!(
            refusal(found(meta(3)), &other),
            format!("generation changed since the last backup (was {GEN}, now {OTHER_GEN})")
        );
        let bigger = Cbtinfo {
            device_capacity: 512 * MIB,
            block_count: 8192,
            ..now(4)
        };
        assert!(refusal(found(meta(3)), &bigger).contains("device size changed"));
        let coarser = Cbtinfo {
            block_size: 1 << 17,
            block_count: 2048,
            ..now(4)
        };
        assert!(refusal(found(meta(3)), &coarser).contains("block size changed"));
        assert!(refusal(found(meta(3)), &now(3)).contains("not older"));
        assert!(refusal(found(meta(9)), &now(3)).contains("not older"));
        let broken = Previous::Found {
            meta: meta(3),
            problem: Some("its image is missing".into()),
        };
        assert_eq!(refusal(broken, &now(4)), "its image is missing");
    }

    #[test]
    fn fallbacks() {
        let full = Fallback {
            checksum: false,
            full: true,
        };
        let checksum = Fallback {
            checksum: true,
            full: false,
        };
        let plan = plan_incremental(Previous::Missing, &now(1), full).unwrap();
        assert_eq!(
            plan,
            Plan::Full {
                reason: Some("there is no previous backup".into())
            }
        );
        // Neither changes a plan that works.
        for fallback in [full, checksum] {
            let plan = plan_incremental(found(meta(1)), &now(2), fallback).unwrap();
            assert_eq!(plan, Plan::Incremental { base: meta(1) });
        }
        // A new generation: checksums tell what changed.
        let other = Cbtinfo {
            generation_id: OTHER_GEN.into(),
            ..now(1)
        };
        let Plan::Checksum { base, reason } = plan_incremental(found(meta(3)), &other, checksum).unwrap()
        else {
            panic!("not a checksum incremental");
        };
        assert_eq!(base, meta(3));
        assert!(reason.starts_with("generation changed"), "{reason}");
        // But not across a new size, nor without a usable point.
        let bigger = Cbtinfo {
            device_capacity: 512 * MIB,
            block_count: 8192,
            ..now(1)
        };
        assert!(plan_incremental(found(meta(3)), &bigger, checksum).is_err());
        let both = Fallback {
            checksum: true,
            full: true,
        };
        let plan = plan_incremental(found(meta(3)), &bigger, both).unwrap();
        assert!(matches!(plan, Plan::Full { reason: Some(_) }));
        assert!(plan_incremental(Previous::Missing, &other, checksum).is_err());
    }

    #[test]
    fn geometry() {
        assert_eq!(block_count(0, 4096), 0);
        assert_eq!(block_count(1, 4096), 1);
        assert_eq!(block_count(4096, 4096), 1);
        assert_eq!(block_count(4097, 4096), 2);
        assert_eq!(block_count(u64::MAX, 1 << 26), 1 << 38);
        assert_eq!(check_geometry(&now(1)), Ok(()));
        let partial = Cbtinfo {
            device_capacity: 256 * MIB + 512,
            block_count: 4097,
            ..now(1)
        };
        assert_eq!(check_geometry(&partial), Ok(()));
        let short = Cbtinfo {
            block_count: 4096,
            ..partial
        };
        assert!(check_geometry(&short).unwrap_err().contains("take 4097 blocks"));
        let odd = Cbtinfo {
            block_size: 3 << 16,
            ..now(1)
        };
        assert!(check_geometry(&odd).unwrap_err().contains("power of two"));
    }

    #[test]
    fn changed_blocks_are_merged_into_runs() {
        let table = [0, 3, 4, 4, 2, 5, 0, 9, 9, 3];
        assert_eq!(changed_blocks(&table, 3), vec![2..4, 5..6, 7..9]);
        assert_eq!(changed_blocks(&table, 0), vec![1..6, 7..10]);
        assert_eq!(changed_blocks(&table, 9), vec![]);
        assert_eq!(changed_blocks(&[], 0), vec![]);
        assert_eq!(changed_blocks(&[255; 4], 254), vec![0..4]);
    }

    #[test]
    fn coarser_blocks() {
        let blocks = [0..2, 5..6, 9..11, 12..13];
        assert_eq!(coarsen(&blocks, 4096, 4096), blocks.to_vec());
        assert_eq!(coarsen(&blocks, 4096, 16384), vec![0..4]);
        assert_eq!(coarsen(&[0..1, 9..10], 4096, 16384), vec![0..1, 2..3]);
        assert_eq!(coarsen(&[3..4, 4..5], 4096, 8192), vec![1..3]);
        assert_eq!(coarsen(&[], 4096, 8192), vec![]);
    }
}
