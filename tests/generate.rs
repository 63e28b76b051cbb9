//! `generate`: the whole space's totals (SPEC.md), the reference sample's
//! canonical forms, and agreement with the original algorithm.

use crate::common;

use std::collections::HashMap;
use std::sync::OnceLock;

use common::{REAL_CELLS, sample_rows};
use nasbench::cell::generate::{GenerateError, GenerateOptions, NoProgress, Space, generate};

fn full_space() -> &'static Space {
    static SPACE: OnceLock<Space> = OnceLock::new();
    SPACE.get_or_init(|| generate(&GenerateOptions::default(), &NoProgress).unwrap())
}

#[test]
fn totals_of_the_full_space() {
    let space = full_space();
    assert_eq!(space.cells.len(), 423_624);
    assert_eq!(space.labeled_graphs, 1_293_208);
    let cumulative: Vec<(usize, usize)> = space
        .per_vertices
        .iter()
        .map(|v| (v.vertices, v.cumulative_cells))
        .collect();
    assert_eq!(
        cumulative,
        [
            (2, 1),
            (3, 7),
            (4, 91),
            (5, 2_532),
            (6, 64_542),
            (7, 423_624)
        ]
    );
    assert_eq!(space.merged_classes, 0);
    // Hashes are unique.
    let mut hashes: Vec<_> = space.cells.iter().map(|c| c.hash).collect();
    hashes.sort_unstable();
    hashes.dedup();
    assert_eq!(hashes.len(), 423_624);
}

#[test]
fn reference_sample_is_generated_in_its_canonical_form() {
    let by_hash: HashMap<String, _> = full_space()
        .cells
        .iter()
        .map(|c| (c.hash.to_string(), c))
        .collect();
    for r in sample_rows() {
        let cell = by_hash
            .get(&r.hash)
            .unwrap_or_else(|| panic!("{} not generated", r.hash));
        assert_eq!(cell.graph.adjacency_bits(), r.bits, "{}", r.hash);
        assert_eq!(cell.graph.labels(), r.labels, "{}", r.hash);
        assert_eq!(cell.graph.num_edges(), r.edges);
        assert_eq!(cell.graph.n as usize, r.vertices);
    }
}

#[test]
fn real_records_are_generated_as_the_dataset_stores_them() {
    let by_hash: HashMap<String, _> = full_space()
        .cells
        .iter()
        .map(|c| (c.hash.to_string(), c))
        .collect();
    for (hash, bits, ops, params) in REAL_CELLS {
        let cell = by_hash[hash];
        assert_eq!(cell.graph.adjacency_bits(), bits);
        assert_eq!(cell.graph.ops().join(","), ops);
        assert_eq!(cell.trainable_parameters, params);
    }
}

#[test]
fn cells_are_in_first_found_order() {
    // The original walks n = 2..=7: vertex counts never decrease.
    let cells = &full_space().cells;
    assert!(cells.windows(2).all(|w| w[0].graph.n <= w[1].graph.n));
    // The first cell is input -> output.
    assert_eq!(cells[0].graph.adjacency_bits(), "0100");
}

#[test]
fn original_algorithm_agrees_and_buckets_are_isomorphic() {
    // Hash every labeled graph, bucket by hash, check isomorphism with the
    // bucket's first graph, and compare with the fast path.
    for (max_vertices, max_edges) in [(5, 9), (6, 9), (7, 5)] {
        let opts = GenerateOptions {
            max_vertices,
            max_edges,
            verify_isomorphism: true,
        };
        let verified = generate(&opts, &NoProgress).unwrap();
        assert!(verified.verified);
        let fast = generate(
            &GenerateOptions {
                verify_isomorphism: false,
                ..opts
            },
            &NoProgress,
        )
        .unwrap();
        assert_eq!(verified.cells, fast.cells);
        if max_edges == 9 {
            let expect = if max_vertices == 5 { 2_532 } else { 64_542 };
            assert_eq!(fast.cells.len(), expect);
        }
        // Smaller edge limits give subsets of the full space.
        let full: std::collections::HashSet<_> =
            full_space().cells.iter().map(|c| c.hash).collect();
        assert!(fast.cells.iter().all(|c| full.contains(&c.hash)));
    }
}

#[test]
fn limits_are_checked() {
    let opts = GenerateOptions {
        max_vertices: 8,
        ..Default::default()
    };
    assert_eq!(
        generate(&opts, &NoProgress).unwrap_err(),
        GenerateError::MaxVertices(8)
    );
    let opts = GenerateOptions {
        max_vertices: 1,
        ..Default::default()
    };
    assert!(generate(&opts, &NoProgress).is_err());
}
