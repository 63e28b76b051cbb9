//! CIFAR-10 for training: the official binary and Python-pickle releases, the original's TFRecords, the protocol's splits, and a synthetic learnable dataset in the binary layout.
//!
//! Splits as the original (`cifar.py`, `generate_cifar10_tfrecords.py`):
//! train = batches 1-4, validation = batch 5, test = the test batch,
//! train-eval = batch 1 (the first file of train). Images stay raw bytes,
//! channel-major (`[3][h][w]`, as every release stores them); the backend
//! pads, crops, flips and normalizes.

use std::path::{Path, PathBuf};

use prost::Message;

use crate::rng::SplitMix64;

/// Per-channel mean subtracted from raw pixel values (`cifar.py`).
pub const RGB_MEAN: [f32; 3] = [125.31, 122.95, 113.87];
/// Per-channel standard deviation divided by (`cifar.py`).
pub const RGB_STD: [f32; 3] = [62.99, 62.09, 66.70];
/// Classes of CIFAR-10.
pub const CLASSES: usize = 10;
/// Label names, in label order (`batches.meta.txt`).
pub const LABEL_NAMES: [&str; CLASSES] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

#[allow(clippy::enum_variant_names)]
mod pb {
    include!(concat!(env!("OUT_DIR"), "/tensorflow.rs"));
}

/// Why the data cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// No CIFAR-10 release found.
    #[error(
        "no CIFAR-10 in {0}: expected cifar-10-batches-bin/ (data_batch_1.bin ... data_batch_5.bin, \
         test_batch.bin), cifar-10-batches-py/ (data_batch_1 ... test_batch), or the original's \
         TFRecords (train_1.tfrecords ... train_4.tfrecords, validation.tfrecords, test.tfrecords); \
         `nasbench synth-cifar DIR` writes a synthetic one"
    )]
    NotFound(String),
    /// One file of a release is missing.
    #[error("{path}: missing ({what})")]
    Missing {
        /// The file.
        path: String,
        /// Which release expects it.
        what: &'static str,
    },
    /// A file is not what its release promises.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong (with the record or byte offset).
        message: String,
    },
    /// Reading or writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn format_err(path: &Path, message: impl Into<String>) -> DataError {
    DataError::Format {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Images and labels of one split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Split {
    /// `[n][3][h][w]` raw bytes.
    pub images: Vec<u8>,
    /// One label (0..10) per image.
    pub labels: Vec<u8>,
    /// Image height.
    pub h: usize,
    /// Image width.
    pub w: usize,
}

impl Split {
    /// Images in the split.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image.
    pub fn image_bytes(&self) -> usize {
        3 * self.h * self.w
    }

    /// The images and labels at `indices`, appended to the outputs
    /// (labels as f32 class indices, as the backends take them).
    pub fn gather(&self, indices: &[usize], images: &mut Vec<u8>, labels: &mut Vec<f32>) {
        let b = self.image_bytes();
        images.clear();
        labels.clear();
        for &i in indices {
            images.extend_from_slice(&self.images[i * b..(i + 1) * b]);
            labels.push(f32::from(self.labels[i]));
        }
    }

    fn append(&mut self, other: Split) {
        if self.is_empty() {
            *self = other;
        } else {
            self.images.extend(other.images);
            self.labels.extend(other.labels);
        }
    }
}

/// The protocol's splits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cifar {
    /// Batches 1-4.
    pub train: Split,
    /// Images of the first training file (the train-eval split).
    pub train_eval_len: usize,
    /// Batch 5.
    pub valid: Split,
    /// The test batch.
    pub test: Split,
    /// Where it was read from, and which release.
    pub source: String,
}

impl Cifar {
    /// The train-eval split (batch 1).
    pub fn train_eval(&self) -> Split {
        let b = self.train.image_bytes();
        Split {
            images: self.train.images[..self.train_eval_len * b].to_vec(),
            labels: self.train.labels[..self.train_eval_len].to_vec(),
            h: self.train.h,
            w: self.train.w,
        }
    }
}

/// Reads CIFAR-10 from `dir`: the binary release (`cifar-10-batches-bin/`,
/// in `dir` or `dir` itself), the Python release (`cifar-10-batches-py/`),
/// or the original's TFRecords. `image_size` is the side of the images
/// (32 for the real data; the synthetic set may be smaller).
pub fn load(dir: &Path, image_size: usize) -> Result<Cifar, DataError> {
    load_classes(dir, image_size, CLASSES)
}

/// [`load`] for a network with `classes` outputs: a label outside
/// `0..classes` is an error naming its file and record (the backends index
/// the logits by label).
pub fn load_classes(dir: &Path, image_size: usize, classes: usize) -> Result<Cifar, DataError> {
    if classes == 0 {
        return Err(DataError::Format {
            path: dir.display().to_string(),
            message: "a network with 0 classes (num_labels=0) cannot be trained".into(),
        });
    }
    let classes = classes.min(CLASSES);
    let candidates = [
        (dir.join("cifar-10-batches-bin"), Release::Binary),
        (dir.to_path_buf(), Release::Binary),
        (dir.join("cifar-10-batches-py"), Release::Pickle),
        (dir.to_path_buf(), Release::Pickle),
        (dir.to_path_buf(), Release::TfRecord),
    ];
    for (d, release) in candidates {
        if d.join(release.files()[0]).is_file() {
            return load_release(&d, release, image_size, classes);
        }
    }
    Err(DataError::NotFound(dir.display().to_string()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    Binary,
    Pickle,
    TfRecord,
}

impl Release {
    /// train 1-4, validation, test.
    fn files(self) -> [&'static str; 6] {
        match self {
            Release::Binary => [
                "data_batch_1.bin",
                "data_batch_2.bin",
                "data_batch_3.bin",
                "data_batch_4.bin",
                "data_batch_5.bin",
                "test_batch.bin",
            ],
            Release::Pickle => [
                "data_batch_1",
                "data_batch_2",
                "data_batch_3",
                "data_batch_4",
                "data_batch_5",
                "test_batch",
            ],
            Release::TfRecord => [
                "train_1.tfrecords",
                "train_2.tfrecords",
                "train_3.tfrecords",
                "train_4.tfrecords",
                "validation.tfrecords",
                "test.tfrecords",
            ],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Release::Binary => "CIFAR-10 binary release",
            Release::Pickle => "CIFAR-10 Python release",
            Release::TfRecord => "TFRecords of generate_cifar10_tfrecords.py",
        }
    }
}

fn load_release(
    dir: &Path,
    release: Release,
    size: usize,
    classes: usize,
) -> Result<Cifar, DataError> {
    let mut splits = Vec::new();
    for f in release.files() {
        let path = dir.join(f);
        if !path.is_file() {
            return Err(DataError::Missing {
                path: path.display().to_string(),
                what: release.name(),
            });
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let split = match release {
            Release::Binary => parse_binary(&path, &bytes, size, classes)?,
            Release::Pickle => parse_pickle(&path, &bytes, size, classes)?,
            Release::TfRecord => parse_tfrecord(&path, &bytes, size, classes)?,
        };
        splits.push(split);
    }
    let mut it = splits.into_iter();
    let mut train = Split::default();
    let mut train_eval_len = 0;
    for k in 0..4 {
        let s = it.next().unwrap_or_default();
        if k == 0 {
            train_eval_len = s.len();
        }
        train.append(s);
    }
    Ok(Cifar {
        train,
        train_eval_len,
        valid: it.next().unwrap_or_default(),
        test: it.next().unwrap_or_default(),
        source: format!("{} ({})", dir.display(), release.name()),
    })
}

fn check_label(path: &Path, label: i64, record: usize, classes: usize) -> Result<u8, DataError> {
    u8::try_from(label)
        .ok()
        .filter(|&l| usize::from(l) < classes)
        .ok_or_else(|| {
            let why = if classes == CLASSES {
                String::new()
            } else {
                format!(" (the network has num_labels={classes})")
            };
            format_err(
                path,
                format!(
                    "record {record}: label {label} is outside 0..={}{why}",
                    classes - 1
                ),
            )
        })
}

/// Binary release: records of 1 label byte and `3 * size * size` pixels.
fn parse_binary(
    path: &Path,
    bytes: &[u8],
    size: usize,
    classes: usize,
) -> Result<Split, DataError> {
    let rec = 1 + 3 * size * size;
    if bytes.is_empty() || !bytes.len().is_multiple_of(rec) {
        return Err(format_err(
            path,
            format!(
                "{} bytes is not a whole number of {rec}-byte records ({size}x{size} images); \
                 a truncated download?",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / rec;
    let mut split = Split {
        images: Vec::with_capacity(n * (rec - 1)),
        labels: Vec::with_capacity(n),
        h: size,
        w: size,
    };
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        split
            .labels
            .push(check_label(path, i64::from(r[0]), i, classes)?);
        split.images.extend_from_slice(&r[1..]);
    }
    Ok(split)
}

/// Python release: a pickled dict with `data` (a numpy uint8 array of
/// `n x 3072`) and `labels` (a list of ints).
fn parse_pickle(
    path: &Path,
    bytes: &[u8],
    size: usize,
    classes: usize,
) -> Result<Split, DataError> {
    use serde_pickle::{DeOptions, HashableValue, Value};
    let value = serde_pickle::value_from_slice(bytes, DeOptions::new())
        .map_err(|e| format_err(path, format!("not a readable pickle: {e}")))?;
    let Value::Dict(entries) = value else {
        return Err(format_err(path, "the pickle is not a dict"));
    };
    let get = |key: &str| {
        entries.iter().find_map(|(k, v)| match k {
            HashableValue::Bytes(b) if b == key.as_bytes() => Some(v),
            HashableValue::String(s) if s == key => Some(v),
            _ => None,
        })
    };
    let labels: Vec<i64> = match get("labels") {
        Some(Value::List(items)) => items
            .iter()
            .map(|v| match v {
                Value::I64(i) => Some(*i),
                _ => None,
            })
            .collect::<Option<_>>()
            .ok_or_else(|| format_err(path, "`labels` holds something other than ints"))?,
        _ => return Err(format_err(path, "no `labels` list")),
    };
    // A numpy array unpickles (without numpy) as the state tuple of its
    // BUILD: (version, shape, dtype, fortran, raw bytes).
    fn raw_bytes(v: &Value) -> Option<&[u8]> {
        match v {
            Value::Bytes(b) => Some(b),
            Value::Tuple(items) | Value::List(items) => items.iter().rev().find_map(raw_bytes),
            _ => None,
        }
    }
    let data = get("data")
        .and_then(raw_bytes)
        .ok_or_else(|| format_err(path, "no `data` array"))?;
    let per = 3 * size * size;
    if data.len() != labels.len() * per {
        return Err(format_err(
            path,
            format!(
                "`data` has {} bytes for {} labels; expected {per} per image",
                data.len(),
                labels.len()
            ),
        ));
    }
    let labels = labels
        .iter()
        .enumerate()
        .map(|(i, &l)| check_label(path, l, i, classes))
        .collect::<Result<_, _>>()?;
    Ok(Split {
        images: data.to_vec(),
        labels,
        h: size,
        w: size,
    })
}

/// The original's TFRecords: one `tf.train.Example` per image with
/// `image` (raw bytes, channel-major) and `label` (int64).
fn parse_tfrecord(
    path: &Path,
    bytes: &[u8],
    size: usize,
    classes: usize,
) -> Result<Split, DataError> {
    let (frames, err) = crate::dataset::tfrecord::scan(bytes);
    if let Some(e) = err {
        return Err(format_err(path, e.to_string()));
    }
    let mut split = Split {
        h: size,
        w: size,
        ..Split::default()
    };
    for f in frames {
        let data = f
            .check(bytes)
            .map_err(|e| format_err(path, e.to_string()))?;
        let at = format!("record {} at byte {}", f.index, f.offset);
        let ex = pb::Example::decode(data)
            .map_err(|e| format_err(path, format!("{at}: not a tf.train.Example: {e}")))?;
        let feature = |name: &str| {
            ex.features
                .as_ref()
                .and_then(|fs| fs.feature.get(name))
                .and_then(|f| f.kind.as_ref())
        };
        let image = match feature("image") {
            Some(pb::feature::Kind::BytesList(b)) if b.value.len() == 1 => &b.value[0],
            _ => return Err(format_err(path, format!("{at}: no `image` bytes"))),
        };
        let label = match feature("label") {
            Some(pb::feature::Kind::Int64List(l)) if l.value.len() == 1 => l.value[0],
            _ => return Err(format_err(path, format!("{at}: no `label` int64"))),
        };
        if image.len() != 3 * size * size {
            return Err(format_err(
                path,
                format!(
                    "{at}: image of {} bytes, expected {}",
                    image.len(),
                    3 * size * size
                ),
            ));
        }
        split
            .labels
            .push(check_label(path, label, f.index as usize, classes)?);
        split.images.extend_from_slice(image);
    }
    Ok(split)
}

/// Writes a synthetic CIFAR-shaped dataset in the binary release's layout
/// (`dir/cifar-10-batches-bin/`): `per_file` images per batch file, `size`
/// pixels square. Each class has its own colour and stripe direction and
/// frequency, plus noise and a random shift, so a small network learns it
/// well but not instantly. Deterministic for a seed.
pub fn write_synthetic(
    dir: &Path,
    per_file: usize,
    size: usize,
    seed: u64,
) -> Result<PathBuf, DataError> {
    let out = dir.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&out).map_err(io(&out))?;
    let mut rng = SplitMix64::new(seed);
    for (k, name) in Release::Binary.files().iter().enumerate() {
        let mut bytes = Vec::with_capacity(per_file * (1 + 3 * size * size));
        for i in 0..per_file {
            let label = ((i * 7 + k * 3) % CLASSES) as u8;
            bytes.push(label);
            bytes.extend(synthetic_image(label, size, &mut rng));
        }
        let path = out.join(name);
        crate::output::write_atomically(&path, |f| {
            std::io::Write::write_all(f, &bytes).map_err(|source| crate::output::ExportError::Io {
                path: path.display().to_string(),
                source,
            })
        })
        .map_err(|e| format_err(&path, e.to_string()))?;
    }
    let meta = out.join("batches.meta.txt");
    std::fs::write(&meta, LABEL_NAMES.join("\n") + "\n").map_err(io(&meta))?;
    Ok(out)
}

/// One synthetic image of class `label`, channel-major.
fn synthetic_image(label: u8, size: usize, rng: &mut SplitMix64) -> Vec<u8> {
    let l = usize::from(label);
    // Colour: a hue per class (two classes share each of five hues and
    // differ in their stripes).
    let hue = [
        [200u8, 60, 60],
        [60, 200, 60],
        [60, 60, 200],
        [200, 200, 60],
        [60, 200, 200],
    ][l % 5];
    let vertical = l % 2 == 1;
    let period = 2 + l / 5 * 2; // 2 or 4 pixels
    let shift = rng.below(period as u64) as usize;
    let mut img = vec![0u8; 3 * size * size];
    for c in 0..3 {
        for y in 0..size {
            for x in 0..size {
                let t = if vertical { x } else { y };
                let stripe = ((t + shift) / (period / 2)).is_multiple_of(2);
                let base = f64::from(hue[c]) * if stripe { 1.0 } else { 0.55 };
                let noise = (rng.below(61) as f64) - 30.0;
                img[(c * size + y) * size + x] = (base + noise).clamp(0.0, 255.0) as u8;
            }
        }
    }
    img
}
