//! Property tests: the hash is a graph invariant; no input makes the cell model panic.

use nasbench::cell::graph::{Matrix, hash_module, is_isomorphic, permute_labels};
use nasbench::cell::lanes::{BatchScratch, LANES, hash_batch};
use nasbench::cell::network::{NetworkConfig, compute_vertex_channels, trainable_parameters};
use nasbench::cell::parse::{parse_matrix, parse_ops};
use nasbench::cell::spec::{Domain, ModelSpec};
use proptest::prelude::*;

/// A random upper-triangular cell of 2..=9 vertices with dataset ops.
fn cell() -> impl Strategy<Value = (Vec<Vec<i64>>, Vec<String>)> {
    (2usize..=9).prop_flat_map(|n| {
        (
            proptest::collection::vec(any::<bool>(), n * n),
            proptest::collection::vec(0usize..3, n),
        )
            .prop_map(move |(bits, ops)| {
                let m = (0..n)
                    .map(|i| {
                        (0..n)
                            .map(|j| i64::from(j > i && bits[i * n + j]))
                            .collect()
                    })
                    .collect();
                let mut names: Vec<String> = ops
                    .into_iter()
                    .map(|o| ["conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"][o].to_string())
                    .collect();
                names[0] = "input".into();
                names[n - 1] = "output".into();
                (m, names)
            })
    })
}

/// A permutation of `0..n` fixing 0 and n-1.
fn interior_perm(n: usize) -> impl Strategy<Value = Vec<usize>> {
    Just((1..n - 1).collect::<Vec<usize>>())
        .prop_shuffle()
        .prop_map(move |mid| {
            let mut p = vec![0];
            p.extend(mid);
            p.push(n - 1);
            p
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn permuting_interior_vertices_keeps_the_hash(((m, ops), perm) in cell().prop_flat_map(|c| {
        let n = c.0.len();
        (Just(c), interior_perm(n))
    })) {
        let spec = ModelSpec::new(&m, ops.clone()).unwrap();
        // Relabel vertex v as perm[v]; with input and output fixed the result is
        // a (possibly not upper-triangular) isomorphic graph: hash it directly.
        let matrix = Matrix::from_nested(&m).unwrap();
        let labels: Vec<i64> = ops.iter().enumerate().map(|(v, o)| match v {
            0 => -1,
            v if v == ops.len() - 1 => -2,
            _ => ["conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"].iter().position(|c| c == o).unwrap() as i64,
        }).collect();
        let h1 = hash_module(&matrix, &labels);
        let h2 = hash_module(&matrix.permute(&perm), &permute_labels(&labels, &perm));
        prop_assert_eq!(h1, h2);
        prop_assert!(is_isomorphic(&matrix, &labels, &matrix.permute(&perm), &permute_labels(&labels, &perm)));
        // For a full DAG the pruned spec is the matrix itself, and its hash agrees.
        if matrix.is_full_dag() {
            prop_assert_eq!(spec.hash().unwrap(), h1);
        }
    }

    #[test]
    fn random_directed_graphs_permuted_hash_alike(
        (m, labels, perm) in (3usize..20).prop_flat_map(|n| (
            proptest::collection::vec(proptest::collection::vec(0u8..2, n), n),
            proptest::collection::vec(0i64..11, n),
            Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
        ))
    ) {
        // The original's test_random_isomorphism_hashing: any directed graph,
        // self-loops included, any labels.
        let matrix = Matrix::from_nested(&m).unwrap();
        prop_assert_eq!(
            hash_module(&matrix, &labels),
            hash_module(&matrix.permute(&perm), &permute_labels(&labels, &perm))
        );
    }

    #[test]
    fn batch_hash_equals_scalar_hash(((m, ops), k) in (cell(), 1usize..=LANES)) {
        let matrix = Matrix::from_nested(&m).unwrap();
        let n = ops.len();
        let labelings: Vec<Vec<i64>> = (0..k).map(|j| {
            (0..n).map(|v| if v == 0 { -1 } else if v == n - 1 { -2 } else { ((v * 7 + j * 5) % 3) as i64 }).collect()
        }).collect();
        let refs: Vec<&[i64]> = labelings.iter().map(Vec::as_slice).collect();
        let got = hash_batch(matrix.rows(), &refs, &mut BatchScratch::default());
        for (l, h) in labelings.iter().zip(got) {
            prop_assert_eq!(h, hash_module(&matrix, l));
        }
    }

    /// Square matrices of small integers (mostly 0 and 1, often upper
    /// triangular), sometimes a ragged row or one op too many: accepted
    /// exactly when square, strictly upper triangular and 0/1 with one op
    /// per vertex (the rule computed here, independently of `spec.rs`), and
    /// nothing downstream panics on what is accepted.
    #[test]
    fn specs_are_accepted_exactly_when_square_binary_upper_triangular(
        n in 0usize..9,
        entries in proptest::collection::vec(
            prop_oneof![6 => Just(0i64), 3 => Just(1i64), 1 => -2i64..3], 81),
        upper_only in proptest::bool::weighted(0.7),
        extra_op in proptest::bool::weighted(0.15),
        ragged in proptest::bool::weighted(0.1),
        cin in 0usize..64, cout in 0usize..64,
    ) {
        let mut rows: Vec<Vec<i64>> = (0..n)
            .map(|i| (0..n).map(|j| if upper_only && j <= i { 0 } else { entries[i * 9 + j] }).collect())
            .collect();
        let ragged = ragged && n > 0;
        if ragged {
            rows[n - 1].pop();
        }
        let k = n + usize::from(extra_op);
        let ops: Vec<String> = (0..k)
            .map(|v| ["input", "conv3x3-bn-relu", "maxpool3x3", "output"][v % 4].to_string())
            .collect();
        let binary_upper = rows.iter().enumerate().all(|(i, r)| {
            r.iter().enumerate().all(|(j, &v)| if j <= i { v == 0 } else { v == 0 || v == 1 })
        });
        let accept = !ragged && k == n && binary_upper;
        let got = ModelSpec::new(&rows, ops);
        prop_assert_eq!(got.is_ok(), accept, "{:?}: {:?}", rows, got.as_ref().err());
        if let Ok(spec) = got {
            prop_assert_eq!(spec.original_matrix().n(), n);
            let _ = spec.check(&Domain::default());
            let _ = spec.hash();
            let _ = trainable_parameters(&spec, &NetworkConfig::default());
            let _ = compute_vertex_channels(cin, cout, spec.original_matrix());
            if let Some(m) = spec.matrix() {
                // Pruning only removes vertices.
                prop_assert!(m.n() <= n);
                let _ = compute_vertex_channels(cin, cout, m);
            }
        }
    }

    #[test]
    fn random_upper_triangular_cells_never_panic((m, mut ops) in cell(), op in "[a-z0-9-]{0,12}", at in 0usize..9) {
        let n = ops.len();
        ops[at % n] = op;
        let spec = ModelSpec::new(&m, ops).unwrap();
        if let Some(pruned) = spec.matrix() {
            // Pruning leaves only vertices on an input -> output path.
            prop_assert!(pruned.is_full_dag());
            prop_assert_eq!(spec.ops().map(<[String]>::len), Some(pruned.n()));
        }
        if spec.is_valid(&Domain::default()) {
            prop_assert!(spec.hash().is_ok());
            prop_assert!(trainable_parameters(&spec, &NetworkConfig::default()).is_ok());
        }
    }

    #[test]
    fn parsers_never_panic(s in ".{0,80}") {
        let _ = parse_matrix(&s);
        let _ = parse_ops(&s);
    }
}
