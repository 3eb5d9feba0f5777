// SPDX-License-Identifier: GPL-2.0
//! What a backup copies: every block of the device, or only the blocks that
//! the change tracking table marks as changed since the previous backup.
//! No I/O here: the decisions are tested on the host.

use crate::meta::Meta;
use crate::Cbtinfo;
use std::ops::Range;

/// What is known of the previous backup of a device.
pub enum Previous {
    /// No metadata: the device was never backed up there.
    Missing,
    /// Metadata that cannot be read, and why.
    Unusable(String),
    /// The metadata, and the size of the image beside it (None if missing).
    Found { meta: Meta, image_len: Option<u64> },
}

/// How to back up a device.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Copy every block; `reason` says why an incremental backup that was
    /// asked for cannot be done.
    Full { reason: Option<String> },
    /// Copy the blocks changed since the backup `base` describes.
    Incremental { base: Meta },
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

/// Why the backup `meta` describes, whose image is `image_len` bytes (None if
/// missing), cannot be the base of an incremental backup at tracking state
/// `now` (read right after this backup's snapshot was taken).
fn unusable_base(meta: &Meta, image_len: Option<u64>, now: &Cbtinfo) -> Option<String> {
    // The table only tells changes within one generation; a new one starts
    // when tracking starts again (attach), resets, or wraps at 256 snapshots.
    if meta.generation_id != now.generation_id {
        return Some(format!(
            "generation changed since the last backup (was {}, now {})",
            meta.generation_id, now.generation_id
        ));
    }
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
    if meta.changes_number >= now.changes_number {
        return Some(format!(
            "the last backup is of snapshot {}, not older than this one, {}",
            meta.changes_number, now.changes_number
        ));
    }
    match image_len {
        None => Some("the image of the last backup is missing".into()),
        Some(len) if len != now.device_capacity => Some(format!(
            "the image of the last backup is {len} bytes, not {}",
            now.device_capacity
        )),
        Some(_) => None,
    }
}

/// Plan an incremental backup on top of `previous`; when it cannot be done,
/// plan a full one if `full_if_needed`, or refuse with the reason.
pub fn plan_incremental(previous: Previous, now: &Cbtinfo, full_if_needed: bool) -> Result<Plan, String> {
    let reason = match previous {
        Previous::Missing => "there is no previous backup".into(),
        Previous::Unusable(why) => format!("the previous backup's metadata is unusable: {why}"),
        Previous::Found { meta, image_len } => match unusable_base(&meta, image_len, now) {
            None => return Ok(Plan::Incremental { base: meta }),
            Some(reason) => reason,
        },
    };
    if full_if_needed {
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

/// The bytes of runs of blocks, the last block cut at `capacity`.
pub fn byte_ranges(blocks: &[Range<u64>], block_size: u32, capacity: u64) -> Vec<Range<u64>> {
    let size = u64::from(block_size);
    blocks
        .iter()
        .map(|b| (b.start * size).min(capacity)..(b.end * size).min(capacity))
        .filter(|r| !r.is_empty())
        .collect()
}

/// The total length of `ranges`.
pub fn total(ranges: &[Range<u64>]) -> u64 {
    ranges.iter().map(|r| r.end - r.start).sum()
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
            device: "/dev/loop0".into(),
            device_capacity: 256 * MIB,
            block_size: 65536,
            generation_id: GEN.into(),
            changes_number,
            time: 1,
            kind: Kind::Full,
            bytes_copied: 256 * MIB,
            complete: true,
        }
    }

    fn found(meta: Meta) -> Previous {
        Previous::Found {
            meta,
            image_len: Some(256 * MIB),
        }
    }

    /// The refusal reason for `previous` at `now`, or panic.
    fn refusal(previous: Previous, now: &Cbtinfo) -> String {
        plan_incremental(previous, now, false).unwrap_err()
    }

    #[test]
    fn incremental_on_a_good_base() {
        let plan = plan_incremental(found(meta(3)), &now(5), false).unwrap();
        assert_eq!(plan, Plan::Incremental { base: meta(3) });
        // An interrupted incremental left the old numbers: still a base.
        let base = Meta {
            complete: false,
            ..meta(3)
        };
        let plan = plan_incremental(found(base.clone()), &now(4), false).unwrap();
        assert_eq!(plan, Plan::Incremental { base });
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
        let missing = Previous::Found {
            meta: meta(3),
            image_len: None,
        };
        assert!(refusal(missing, &now(4)).contains("image of the last backup is missing"));
        let short = Previous::Found {
            meta: meta(3),
            image_len: Some(MIB),
        };
        assert!(refusal(short, &now(4)).contains("1048576 bytes, not 268435456"));
    }

    #[test]
    fn full_if_needed_falls_back_with_the_reason() {
        let plan = plan_incremental(Previous::Missing, &now(1), true).unwrap();
        assert_eq!(
            plan,
            Plan::Full {
                reason: Some("there is no previous backup".into())
            }
        );
        // And does not change a plan that works.
        let plan = plan_incremental(found(meta(1)), &now(2), true).unwrap();
        assert_eq!(plan, Plan::Incremental { base: meta(1) });
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
    fn byte_ranges_cut_the_last_block() {
        let capacity = 10 * 4096 + 512;
        let blocks = [0..2, 5..6, 9..11];
        assert_eq!(
            byte_ranges(&blocks, 4096, capacity),
            vec![0..8192, 20480..24576, 36864..capacity]
        );
        assert_eq!(
            total(&byte_ranges(&blocks, 4096, capacity)),
            8192 + 4096 + 4096 + 512
        );
        // A whole device in full, the last block partial.
        let all = 0..block_count(capacity, 4096);
        assert_eq!(byte_ranges(&[all], 4096, capacity), vec![0..capacity]);
        let none = 0..0;
        assert_eq!(byte_ranges(&[none], 4096, capacity), vec![]);
    }
}
