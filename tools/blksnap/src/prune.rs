// SPDX-License-Identifier: GPL-2.0
//! Which restore points to keep (`--keep-last`, `--keep-daily`, ...), and
//! dropping the others without breaking the ones kept: the points a kept
//! point is built on are merged into it first.

use crate::copy::{NewFile, ReadAt};
use crate::meta::Meta;
use crate::points::{Store, Top};
use crate::qcow2::{self, CLUSTER_SIZE};
use anyhow::{bail, Result};

/// How many points to keep: the newest `last`, and the newest of each of
/// the newest `daily` days, `weekly` weeks, `monthly` months (UTC) that have
/// points. The newest point is always kept.
#[derive(Clone, Copy, Debug, Default)]
pub struct Policy {
    pub last: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

/// The civil date (year, month, day) of `days` since 1970-01-01.
pub fn civil(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days_from_civil inverse, in 400-year eras.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `time` (seconds since the epoch) as 2026-11-30T17:45:01Z.
pub fn timestamp(time: u64) -> String {
    let (days, secs) = ((time / 86_400) as i64, time % 86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Which of the points, given as (id, time) oldest first, to keep.
pub fn keep(points: &[(u32, u64)], policy: Policy) -> Vec<u32> {
    let day = |t: u64| (t / 86_400) as i64;
    // Weeks from Monday: 1970-01-01 was a Thursday.
    let week = |t: u64| (day(t) + 3).div_euclid(7);
    let month = |t: u64| {
        let (y, m, _) = civil(day(t));
        y * 12 + i64::from(m)
    };
    let rules: [(u32, &dyn Fn(u64) -> i64); 4] = [
        (policy.last, &|_| 0),
        (policy.daily, &day),
        (policy.weekly, &week),
        (policy.monthly, &month),
    ];
    let mut kept = Vec::new();
    for (rule, (count, bucket)) in rules.iter().enumerate() {
        let (mut left, mut previous) = (*count, None);
        for &(id, time) in points.iter().rev() {
            // keep-last counts points, the others buckets.
            let b = if rule == 0 { i64::from(id) } else { bucket(time) };
            if left > 0 && previous != Some(b) {
                kept.push(id);
                left -= 1;
            }
            previous = Some(b);
        }
    }
    kept.extend(points.last().map(|&(id, _)| id));
    kept.sort_unstable();
    kept.dedup();
    kept
}

/// What prune did, or would do, to a device's points.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub kept: Vec<u32>,
    pub dropped: Vec<u32>,
    /// The bytes of data written to merge the dropped points.
    pub written: u64,
}

/// Drop the points of `store` that `policy` does not keep; with `dry_run`,
/// only say which.
pub fn prune(store: &Store, policy: Policy, dry_run: bool) -> Result<Outcome> {
    let points = store.points()?;
    let times: Vec<(u32, u64)> = points.iter().map(|m| (m.id, m.time)).collect();
    let mut outcome = Outcome {
        kept: keep(&times, policy),
        ..Outcome::default()
    };
    let mut run = Vec::new();
    for point in points {
        if !outcome.kept.contains(&point.id) {
            run.push(point);
            continue;
        }
        if !run.is_empty() && !dry_run {
            outcome.written += merge(store, &run, &point)?;
            for gone in &run {
                store.remove(gone)?;
            }
        }
        outcome.dropped.extend(run.drain(..).map(|m| m.id));
    }
    Ok(outcome)
}

/// Rewrite the image of `kept` so that it holds what the points `run`
/// (oldest first) it is built on hold, and is built on what the oldest of
/// them is built on; returns the bytes of data written. Its content does
/// not change: a crash leaves the old image or the new one.
fn merge(store: &Store, run: &[Meta], kept: &Meta) -> Result<u64> {
    let chain = store.chain(kept)?;
    for (depth, point) in (1..).zip(run.iter().rev()) {
        if chain.file_name(depth) != Some(point.image.as_str()) {
            bail!(
                "point {} is not built on point {} as expected: its chain has {:?}",
                kept.id,
                point.id,
                chain.file_name(depth)
            );
        }
    }
    let Top { runs, backing } = chain.top_clusters(run.len() + 1)?;
    let file = NewFile::create(&store.path(&kept.image))?;
    let backing = backing
        .as_ref()
        .map(|(name, format)| (name.as_str(), format.as_str()));
    let mut writer = qcow2::Writer::new(&file, chain.size(), backing, &runs)?;
    let mut buf = vec![0u8; CLUSTER_SIZE as usize];
    for cluster in runs.iter().flat_map(|r| r.clone()) {
        let start = cluster * CLUSTER_SIZE;
        let data = &mut buf[..(chain.size() - start).min(CLUSTER_SIZE) as usize];
        chain.read_at(data, start)?;
        writer.put(cluster, data)?;
    }
    let written = writer.finish()?;
    file.commit()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    #[test]
    fn dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(-1), (1969, 12, 31));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(20_787), (2026, 11, 30));
        assert_eq!(timestamp(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            timestamp(20_787 * DAY + 17 * 3600 + 45 * 60 + 1),
            "2026-11-30T17:45:01Z"
        );
    }

    fn policy(last: u32, daily: u32, weekly: u32, monthly: u32) -> Policy {
        Policy {
            last,
            daily,
            weekly,
            monthly,
        }
    }

    #[test]
    fn keep_last() {
        let points: Vec<(u32, u64)> = (1..=6).map(|i| (i, u64::from(i))).collect();
        assert_eq!(keep(&points, policy(2, 0, 0, 0)), [5, 6]);
        assert_eq!(keep(&points, policy(10, 0, 0, 0)), [1, 2, 3, 4, 5, 6]);
        // The newest is always kept.
        assert_eq!(keep(&points, Policy::default()), [6]);
        assert_eq!(keep(&[], policy(3, 3, 3, 3)), Vec::<u32>::new());
    }

    #[test]
    fn keep_by_calendar() {
        // Monday 2026-11-30 is day 20787: points on Nov 23 (Mon), 28 (Sat),
        // 29 (Sun) twice, 30 twice, and Oct 31.
        let at = |day: i64, hour: u64| (day as u64) * DAY + hour * 3600;
        let points = [
            (1, at(20_757, 1)),
            (2, at(20_780, 1)),
            (3, at(20_785, 1)),
            (4, at(20_786, 1)),
            (5, at(20_786, 9)),
            (6, at(20_787, 1)),
            (7, at(20_787, 9)),
        ];
        assert_eq!(keep(&points, policy(0, 2, 0, 0)), [5, 7]);
        assert_eq!(keep(&points, policy(0, 10, 0, 0)), [1, 2, 3, 5, 7]);
        // Weeks: Nov 30 alone; Nov 23-29; then Oct 31's.
        assert_eq!(keep(&points, policy(0, 0, 2, 0)), [5, 7]);
        assert_eq!(keep(&points, policy(0, 0, 3, 0)), [1, 5, 7]);
        assert_eq!(keep(&points, policy(0, 0, 0, 2)), [1, 7]);
        assert_eq!(keep(&points, policy(1, 1, 0, 1)), [7]);
        assert_eq!(keep(&points, policy(3, 0, 0, 1)), [5, 6, 7]);
        assert_eq!(keep(&points, policy(3, 0, 0, 2)), [1, 5, 6, 7]);
    }
}
