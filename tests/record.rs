//! Decoding the real sample records: framing, JSON, base64 and ModelMetrics.

use crate::common;

use common::REAL_CELLS;
use nasbench::dataset::record::{
    EvaluationData, ModelMetrics, RecordError, decode, decode_into, encode,
};
use nasbench::dataset::tfrecord::scan;

const SAMPLE: &[u8] = include_bytes!("fixtures/nasbench_real_sample.tfrecord");

fn records() -> Vec<nasbench::dataset::record::Record<'static>> {
    let (frames, err) = scan(SAMPLE);
    assert_eq!(err, None);
    frames
        .iter()
        .map(|f| decode(f.check(SAMPLE).unwrap()).unwrap())
        .collect()
}

#[test]
fn real_records_decode_to_real_values() {
    let recs = records();
    assert_eq!(recs.len(), 18);
    for r in &recs {
        let (_, bits, ops, params) = REAL_CELLS.iter().find(|c| c.0 == r.hash).unwrap();
        assert_eq!(r.adjacency, *bits);
        assert_eq!(r.operations, *ops);
        assert_eq!(r.metrics.trainable_parameters, Some(*params as i32));
        // Not published: absent, not zero.
        assert_eq!(r.metrics.total_time, None);
        let ev = &r.metrics.evaluation_data;
        assert_eq!(ev.len(), 3);
        assert_eq!(ev[0].current_epoch, Some(0.0));
        assert_eq!(ev[0].training_time, None);
        assert_eq!(ev[0].validation_accuracy, None);
        assert_eq!(ev[1].current_epoch, Some(r.epochs as f64 / 2.0));
        assert_eq!(ev[2].current_epoch, Some(r.epochs as f64));
        for e in &ev[1..] {
            // Accuracies are multiples of 1/9984 (39 batches of 256).
            for acc in [e.train_accuracy, e.validation_accuracy, e.test_accuracy] {
                let k = acc.unwrap() * 9984.0;
                assert!((k - k.round()).abs() < 1e-3, "{acc:?} of {}", r.hash);
            }
        }
    }
    // SPEC.md: one 108-epoch repeat of the README cell.
    let hit = recs.iter().any(|r| {
        let end = &r.metrics.evaluation_data[2];
        r.hash == "28cfc7874f6d200472e1a9dcd8650aa0"
            && r.epochs == 108
            && end.training_time == Some(1155.85302734375)
            && end.validation_accuracy == Some(0.9376001358032227)
            && end.test_accuracy == Some(0.9311898946762085)
    });
    assert!(hit);
}

#[test]
fn encode_decode_round_trip() {
    let metrics = ModelMetrics {
        evaluation_data: vec![EvaluationData {
            current_epoch: Some(4.0),
            training_time: Some(12.5),
            train_accuracy: None,
            validation_accuracy: Some(0.5),
            test_accuracy: Some(0.25),
            checkpoint_path: Some("/tmp/model.ckpt-1".into()),
        }],
        trainable_parameters: Some(882570),
        total_time: None,
    };
    let data = encode(
        "00112233445566778899aabbccddeeff",
        4,
        "0100",
        "input,output",
        &metrics,
    )
    .unwrap();
    let r = decode(&data).unwrap();
    assert_eq!(r.hash, "00112233445566778899aabbccddeeff");
    assert_eq!(r.epochs, 4);
    assert_eq!(r.metrics, metrics);
}

/// One `ModelMetrics` reused across records (as ingest does) holds exactly
/// what a fresh decode gives: nothing of an earlier record survives, fields
/// absent from the later one included.
#[test]
fn decode_into_a_reused_message_forgets_the_previous_record() {
    let full = ModelMetrics {
        evaluation_data: (0..3)
            .map(|p| EvaluationData {
                current_epoch: Some(f64::from(p)),
                training_time: Some(10.0 * f64::from(p)),
                train_accuracy: Some(0.5),
                validation_accuracy: Some(0.25),
                test_accuracy: Some(0.125),
                checkpoint_path: Some(format!("ckpt-{p}")),
            })
            .collect(),
        trainable_parameters: Some(1234),
        total_time: Some(99.5),
    };
    let sparse = ModelMetrics {
        evaluation_data: vec![EvaluationData {
            current_epoch: Some(0.0),
            ..Default::default()
        }],
        ..Default::default()
    };
    let hash = "00112233445566778899aabbccddeeff";
    let mut reused = ModelMetrics::default();
    for m in [&full, &sparse, &ModelMetrics::default(), &full] {
        let data = encode(hash, 108, "0100", "input,output", m).unwrap();
        let head = decode_into(&data, &mut reused).unwrap();
        assert_eq!(&reused, m);
        assert_eq!(head.hash, hash);
        assert_eq!(head.epochs, 108);
        assert_eq!(head.operations, "input,output");
        assert_eq!(decode(&data).unwrap().metrics, *m);
    }
}

#[test]
fn bad_payloads_are_named() {
    assert!(matches!(decode(b"[1, 2"), Err(RecordError::Json(_))));
    assert!(matches!(
        decode(br#"["h", 4, "0100", "input,output", "!!!"]"#),
        Err(RecordError::Base64(_))
    ));
    // "/w==" is the single byte 0xff: a truncated varint key.
    let e = decode(br#"["h", 4, "0100", "input,output", "/w=="]"#).unwrap_err();
    assert!(matches!(e, RecordError::Proto(_)), "{e}");
    assert!(e.to_string().starts_with("undecodable ModelMetrics"));
}
