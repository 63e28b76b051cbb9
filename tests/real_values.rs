//! Real NAS-Bench-101 values (SPEC.md, the reference enumeration sample, the
//! real records) and the original's error messages.

use crate::common;

use common::{REAL_CELLS, sample_rows, spec};
use nasbench::cell::graph::{Matrix, hash_module};
use nasbench::cell::network::{NetworkConfig, trainable_parameters};
use nasbench::cell::parse::{parse_matrix, parse_ops};
use nasbench::cell::spec::{Domain, ModelSpec, OutOfDomain, SpecError};

fn from_text(bits: &str, ops: &str) -> ModelSpec {
    ModelSpec::new(&parse_matrix(bits).unwrap(), parse_ops(ops).unwrap()).unwrap()
}

#[test]
fn readme_cell_hash_and_parameters() {
    // SPEC.md test vector (real): the README's Inception-like cell.
    let s = from_text(
        "0111010 0000001 0000001 0000100 0000001 0000001 0000000",
        "input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output",
    );
    assert_eq!(
        s.hash().unwrap().to_string(),
        "28cfc7874f6d200472e1a9dcd8650aa0"
    );
    assert_eq!(
        trainable_parameters(&s, &NetworkConfig::default()).unwrap(),
        2_694_282
    );
    assert!(s.is_valid(&Domain::default()));
}

#[test]
fn real_records_hash_and_parameters() {
    for (hash, bits, ops, params) in REAL_CELLS {
        let s = from_text(bits, ops);
        assert_eq!(s.hash().unwrap().to_string(), hash);
        assert_eq!(
            trainable_parameters(&s, &NetworkConfig::default()).unwrap(),
            params,
            "{hash}"
        );
    }
}

#[test]
fn every_reference_sample_row_hashes_to_its_key() {
    let rows = sample_rows();
    assert_eq!(rows.len(), 2000);
    for r in rows {
        let m = parse_matrix(&r.bits).unwrap();
        let matrix = Matrix::from_nested(&m).unwrap();
        assert_eq!(matrix.n(), r.vertices);
        assert_eq!(matrix.num_edges(), r.edges);
        assert_eq!(
            hash_module(&matrix, &r.labels).to_string(),
            r.hash,
            "row {}",
            r.bits
        );
        // And through the spec, from op names.
        let ops = r
            .labels
            .iter()
            .map(|l| l.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(from_text(&r.bits, &ops).hash().unwrap().to_string(), r.hash);
    }
}

#[test]
fn parameters_of_the_smallest_cell_by_hand() {
    // input -> output only: each module is one 1x1 projection (conv + BN).
    // stem 3*3*3*128 + 2*128 = 3712
    // stack 0: 3 * (128*128 + 256) = 49920
    // stack 1: (128*256 + 512) + 2 * (256*256 + 512) = 165376
    // stack 2: (256*512 + 1024) + 2 * (512*512 + 1024) = 658432
    // dense 512*10 + 10 = 5130
    let s = spec(&[&[0, 1], &[0, 0]], &["input", "output"]);
    assert_eq!(
        trainable_parameters(&s, &NetworkConfig::default()).unwrap(),
        3712 + 49920 + 165376 + 658432 + 5130
    );
    // input -> identity -> output: the identity vertex gets the projection instead.
    let s = spec(
        &[&[0, 1, 0], &[0, 0, 1], &[0, 0, 0]],
        &["input", "identity", "output"],
    );
    assert_eq!(
        trainable_parameters(&s, &NetworkConfig::default()).unwrap(),
        3712 + 49920 + 165376 + 658432 + 5130
    );
    // input -> bottleneck3x3 -> output, one module of 8 channels, 2 classes:
    // stem 3*3*3*8 + 16 = 232; projection 8*8 + 16 = 80;
    // bottleneck 8*2 + 4 + 9*2*2 + 4 + 2*8 + 16 = 92; dense 8*2 + 2 = 18.
    let tiny = NetworkConfig {
        input_channels: 3,
        stem_filters: 8,
        num_stacks: 1,
        modules_per_stack: 1,
        num_labels: 2,
    };
    let s = spec(
        &[&[0, 1, 0], &[0, 0, 1], &[0, 0, 0]],
        &["input", "bottleneck3x3", "output"],
    );
    assert_eq!(trainable_parameters(&s, &tiny).unwrap(), 232 + 80 + 92 + 18);
}

#[test]
fn construction_errors_in_the_original_order() {
    let ops = |n: usize| vec!["x".to_string(); n];
    let e = ModelSpec::new(&[vec![0i64, 1], vec![0]], ops(2)).unwrap_err();
    assert_eq!(e.to_string(), "matrix must be square");
    let e = ModelSpec::new(&[vec![0i64, 1], vec![0, 0]], ops(3)).unwrap_err();
    assert_eq!(e.to_string(), "length of ops must match matrix dimensions");
    // Square is checked before the ops length.
    let e = ModelSpec::new(&[vec![0i64, 1, 0], vec![0, 0]], ops(7)).unwrap_err();
    assert_eq!(e, SpecError::NotSquare);
    let e = ModelSpec::new(&[vec![0i64, 1], vec![1, 0]], ops(2)).unwrap_err();
    assert_eq!(e.to_string(), "matrix must be upper triangular");
    let e = ModelSpec::new(&[vec![0i64, 2], vec![0, 0]], ops(2)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "matrix entries must be 0 or 1, got 2 at row 0, column 1"
    );
}

#[test]
fn domain_check_messages_and_order() {
    let d = Domain::default();
    let check = |bits: &str, ops: &str| from_text(bits, ops).check(&d).unwrap_err().to_string();
    assert_eq!(
        check("0000", "input,output"),
        "invalid spec, provided graph is disconnected."
    );
    // 8 vertices in a chain: too many vertices (checked before edges).
    let mut chain = vec![vec![0i64; 8]; 8];
    for i in 0..7 {
        chain[i][i + 1] = 1;
    }
    let s = ModelSpec::new(&chain, vec!["input".into(); 8]).unwrap();
    assert_eq!(
        s.check(&d).unwrap_err().to_string(),
        "too many vertices, got 8 (max vertices = 7)"
    );
    // 7 vertices, 10 edges.
    let s = from_text(
        "0111110 0000001 0000001 0000001 0000001 0000001 0000000",
        "input,maxpool3x3,maxpool3x3,maxpool3x3,maxpool3x3,maxpool3x3,output",
    );
    assert_eq!(
        s.check(&d).unwrap_err(),
        OutOfDomain::TooManyEdges { got: 10, max: 9 }
    );
    assert_eq!(
        s.check(&d).unwrap_err().to_string(),
        "too many edges, got 10 (max edges = 9)"
    );
    assert_eq!(
        check("0110 0001 0001 0000", "conv,identity,maxpool3x3,output"),
        "first operation should be 'input'"
    );
    assert_eq!(
        check("0110 0001 0001 0000", "input,identity,maxpool3x3,out"),
        "last operation should be 'output'"
    );
    assert_eq!(
        check("0110 0001 0001 0000", "input,maxpool3x3,identity,output"),
        "unsupported op identity (available ops = ['conv3x3-bn-relu', 'conv1x1-bn-relu', 'maxpool3x3'])"
    );
}

#[test]
fn ten_edges_before_pruning_can_be_valid() {
    // Vertex 5 is dangling (no path to the output): pruning removes it and
    // its two in-edges, leaving 6 vertices and 8 edges.
    let s = from_text(
        "0111110 0000011 0000001 0000001 0000001 0000000 0000000",
        "input,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output",
    );
    assert_eq!(s.original_matrix().num_edges(), 10);
    assert_eq!(s.matrix().unwrap().n(), 6);
    assert_eq!(s.matrix().unwrap().num_edges(), 8);
    assert!(s.is_valid(&Domain::default()));
}

#[test]
fn stored_form_and_readme_form_share_a_hash() {
    // The dataset stores a different (first-found) matrix for the README cell.
    let (hash, bits, ops, _) = REAL_CELLS[0];
    let stored = from_text(bits, ops);
    assert_eq!(stored.hash().unwrap().to_string(), hash);
    assert_ne!(
        stored.original_matrix().to_bit_string(),
        "0111010000000100000010000100000000100000010000000"
    );
}
