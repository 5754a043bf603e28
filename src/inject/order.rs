//! Windows first: the order in which a layout's first crash points run.
//!
//! 1. Every site once, at its first occurrence after the first completed
//!    save (see [`super::sites::first_save_boundary`]; its first occurrence
//!    when it has none there). Sites that occur after a save come before
//!    those that occur only earlier; among them, namespace operations
//!    (symlink and link first: a name made directly had a moment when it was
//!    missing; then unlink, rename, mkdir) before data operations (writes,
//!    truncations, opens, fsyncs), then by census position. A site whose
//!    point stops inside an in-place rewrite (a file with data opened again
//!    and partly written, [`super::sites::InPlace`]) ranks with the unlinks:
//!    the name's only copy is partial there, as an unlinked name is missing.
//! 2. The remaining occurrences, round-robin over the sites in that order;
//!    each site's occurrences in an order drawn from the seed and the
//!    layout's name, so that layouts cover different occurrences.
//!
//! `--cases N` and a scenario's `points = N` take the first N; a budget runs
//! them in this order until it is spent.

use std::collections::HashMap;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::sites::{Site, SitedPoint};
use crate::protocol::When;

/// How early a site comes in the first round (smaller first), given
/// whether its point stops inside an in-place rewrite.
fn rank(site: &Site, in_place: bool) -> u8 {
    if in_place {
        return 1;
    }
    match (site.call.as_str(), site.when) {
        ("symlink" | "link", None | Some(When::Before)) => 0,
        ("unlink" | "rmdir", None | Some(When::After)) => 1,
        ("rename", None | Some(When::After)) => 2,
        ("rename", Some(_)) => 3,
        ("symlink" | "link" | "unlink" | "rmdir", Some(_)) => 4,
        ("mkdir", _) => 5,
        ("write", None | Some(When::Mid)) => 6,
        ("truncate", _) => 7,
        ("create", None | Some(When::After)) => 8,
        ("write", Some(_)) => 9,
        ("create", Some(_)) => 10,
        ("fsync", _) => 11,
        _ => 12,
    }
}

/// A 64-bit seed that depends on the crash seed and the layout's name.
pub fn salt(seed: u64, layout: &str) -> u64 {
    let h = blake3::hash(format!("crashpoint plan {seed} {layout}").as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    u64::from_le_bytes(b)
}

/// The windows-first order of `points` (every first point of a census, in
/// census order), deterministic in `seed` and `layout`.
pub fn windows_first(
    points: Vec<SitedPoint>,
    boundary: Option<u64>,
    seed: u64,
    layout: &str,
) -> Vec<SitedPoint> {
    // Occurrences of each site, in census order; sites in first-seen order.
    let mut sites: Vec<Site> = Vec::new();
    let mut occurrences: HashMap<Site, Vec<usize>> = HashMap::new();
    for (i, p) in points.iter().enumerate() {
        occurrences
            .entry(p.site.clone())
            .or_insert_with(|| {
                sites.push(p.site.clone());
                Vec::new()
            })
            .push(i);
    }
    let after = |i: usize| boundary.is_some_and(|b| points[i].index >= b);
    let mut firsts: Vec<(bool, u8, u64, Site, usize)> = sites
        .iter()
        .map(|s| {
            let occ = &occurrences[s];
            let rep = occ.iter().copied().find(|&i| after(i)).unwrap_or(occ[0]);
            let late = boundary.is_some() && !after(rep);
            (
                late,
                rank(s, points[rep].in_place),
                points[rep].index,
                s.clone(),
                rep,
            )
        })
        .collect();
    firsts.sort();
    let mut rng = ChaCha8Rng::seed_from_u64(salt(seed, layout));
    let mut rest: Vec<Vec<usize>> = firsts
        .iter()
        .map(|(_, _, _, s, rep)| {
            let mut others: Vec<usize> = occurrences[s]
                .iter()
                .copied()
                .filter(|i| i != rep)
                .collect();
            others.shuffle(&mut rng);
            others.reverse(); // popped from the end
            others
        })
        .collect();
    let mut order: Vec<usize> = firsts.iter().map(|f| f.4).collect();
    loop {
        let before = order.len();
        for r in &mut rest {
            if let Some(i) = r.pop() {
                order.push(i);
            }
        }
        if order.len() == before {
            break;
        }
    }
    let mut slots: Vec<Option<SitedPoint>> = points.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::sites::sited_points;
    use crate::inject::{CensusEntry, CrashPoint, Mode};

    fn census(saves: u64) -> Vec<CensusEntry> {
        let mut out = Vec::new();
        let mut push = |kind: &str, path: String| {
            out.push(CensusEntry {
                index: out.len() as u64 + 1,
                call: crate::census::Call::from_syscall(kind),
                name: kind.into(),
                paths: path.split(" -> ").map(String::from).collect(),
                phase: Default::default(),
                fd: None,
                offset: None,
                len: None,
            })
        };
        push("mkdir", "work/c".into());
        for s in 1..=saves {
            let tmp = format!("work/c/.step={}.ckpt.tmp-77", s * 5);
            push("openat", tmp.clone());
            push("write", tmp.clone());
            push("write", tmp.clone());
            push("rename", format!("{tmp} -> work/c/step={}.ckpt", s * 5));
            if s > 1 {
                push("unlinkat", "work/c/last.ckpt".into());
            }
            push("symlink", "work/c/last.ckpt".into());
        }
        out
    }

    #[test]
    fn every_site_once_first_namespace_first_after_the_first_save() {
        let c = census(3);
        let pts = sited_points(Mode::Syscall, &c);
        let n = pts.len();
        let boundary = crate::inject::sites::first_save_boundary(&c, &["c/step=5.ckpt".into()]);
        assert_eq!(boundary, Some(7));
        let order = windows_first(pts, boundary, 0, "relative");
        assert_eq!(order.len(), n, "a permutation");
        let first: Vec<String> = order.iter().take(6).map(|p| p.site.to_string()).collect();
        assert_eq!(
            first,
            [
                "symlink work/c/last.ckpt",
                "unlink work/c/last.ckpt",
                "rename work/c/.step=#.ckpt.tmp-# -> work/c/step=#.ckpt",
                "write work/c/.step=#.ckpt.tmp-#",
                "create work/c/.step=#.ckpt.tmp-#",
                "mkdir work/c",
            ]
        );
        // The symlink of the second save (after the first completed one).
        assert_eq!(order[0].point, CrashPoint::Syscall(12));
        let mut all: Vec<u64> = order.iter().map(|p| p.index).collect();
        all.sort();
        assert_eq!(all, (1..=n as u64).collect::<Vec<_>>());
    }

    #[test]
    fn a_file_rewritten_in_place_comes_first_with_the_unlinks() {
        // `torch.save(last.ckpt)` over the previous one: open, write in two
        // pieces, every save; the oldest step file is rotated out.
        let mut c: Vec<CensusEntry> = Vec::new();
        let mut push = |call: &str, path: &str, offset: Option<u64>| {
            c.push(CensusEntry {
                index: c.len() as u64 + 1,
                call: crate::census::Call::from_syscall(call),
                name: call.into(),
                paths: vec![path.into()],
                phase: Default::default(),
                fd: Some(3),
                offset,
                len: Some(10),
            })
        };
        for step in [5, 10] {
            let f = format!("work/c/step={step}.ckpt");
            push("openat", &f, None);
            push("write", &f, Some(0));
            push("write", &f, Some(10));
            push("openat", "work/c/last.ckpt", None);
            push("write", "work/c/last.ckpt", Some(0));
            push("write", "work/c/last.ckpt", Some(10));
        }
        push("unlinkat", "work/c/step=5.ckpt", None);
        let b = crate::inject::sites::first_save_boundary(&c, &["c/step=5.ckpt".into()]);
        assert_eq!(b, Some(7));
        let order = windows_first(sited_points(Mode::Syscall, &c), b, 0, "relative");
        let first: Vec<(String, u64)> = order
            .iter()
            .take(3)
            .map(|p| (p.site.to_string(), p.index))
            .collect();
        assert_eq!(
            first,
            [
                // The first write into the reopened last.ckpt: it is empty there.
                ("write work/c/last.ckpt".to_string(), 11),
                ("unlink work/c/step=#.ckpt".to_string(), 13),
                ("write work/c/step=#.ckpt".to_string(), 8),
            ]
        );
        assert!(order[0].in_place && !order[2].in_place);
    }

    #[test]
    fn layouts_draw_different_occurrences_after_the_first_round() {
        let c = census(12);
        let b = crate::inject::sites::first_save_boundary(&c, &[]);
        let a = windows_first(sited_points(Mode::Syscall, &c), b, 0, "relative");
        let z = windows_first(sited_points(Mode::Syscall, &c), b, 0, "absolute");
        assert_eq!(a[..6], z[..6], "the first round is the same");
        assert_ne!(a, z);
        let again = windows_first(sited_points(Mode::Syscall, &c), b, 0, "relative");
        assert_eq!(a, again, "deterministic");
    }
}
