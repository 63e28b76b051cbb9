//! Parsing the forms users paste: a row-major bit string or JSON nested list for the matrix, op names or hash labels for the ops.

use crate::cell::ops::label_name;

/// Input that is not a matrix or op list; the message names the argument
/// and the position of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {message}")]
pub struct ParseError {
    /// Which argument (`matrix` or `ops`).
    pub what: &'static str,
    /// What is wrong, and where.
    pub message: String,
}

fn err(what: &'static str, message: impl Into<String>) -> ParseError {
    ParseError {
        what,
        message: message.into(),
    }
}

/// Parses a matrix given as a JSON nested list (`[[0,1],[0,0]]`) or as a
/// row-major `0`/`1` string of length n*n (`0100`; spaces, commas, `/`
/// and `;` between rows are ignored). Squareness and upper-triangularity are
/// left to [`crate::cell::spec::ModelSpec::new`], which reports them as the original does.
pub fn parse_matrix(text: &str) -> Result<Vec<Vec<i64>>, ParseError> {
    let t = text.trim();
    if t.starts_with('[') {
        return serde_json::from_str::<Vec<Vec<i64>>>(t)
            .map_err(|e| err("matrix", format!("not a JSON list of integer rows ({e})")));
    }
    let mut bits = Vec::with_capacity(t.len());
    for (pos, c) in t.char_indices() {
        match c {
            '0' => bits.push(0),
            '1' => bits.push(1),
            ' ' | '\t' | ',' | '/' | ';' | '_' => {}
            _ => {
                return Err(err(
                    "matrix",
                    format!(
                        "unexpected character {c:?} at position {pos} (expected a bit string of 0 and 1, or a JSON nested list)"
                    ),
                ));
            }
        }
    }
    if bits.is_empty() {
        return Err(err("matrix", "empty"));
    }
    let n = (bits.len() as f64).sqrt().round() as usize;
    if n * n != bits.len() {
        return Err(err(
            "matrix",
            format!(
                "bit string has {} bits, which is not n*n for any n",
                bits.len()
            ),
        ));
    }
    Ok(bits.chunks(n).map(<[i64]>::to_vec).collect())
}

/// Parses ops given as a JSON list (`["input", ...]`), or comma-separated
/// op names (`input,conv3x3-bn-relu,output`), or hash labels (`-1,0,2,-2`:
/// -1 input, 0 conv3x3-bn-relu, 1 conv1x1-bn-relu, 2 maxpool3x3, -2 output;
/// names and labels may be mixed). Names are kept as given: the domain
/// check reports ops the dataset lacks.
pub fn parse_ops(text: &str) -> Result<Vec<String>, ParseError> {
    let t = text.trim();
    let tokens: Vec<String> = if t.starts_with('[') {
        let values: Vec<serde_json::Value> =
            serde_json::from_str(t).map_err(|e| err("ops", format!("not a JSON list ({e})")))?;
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                serde_json::Value::String(s) => Ok(s),
                serde_json::Value::Number(n) => Ok(n.to_string()),
                other => Err(err(
                    "ops",
                    format!("item {i} is {other}, expected an op name or label"),
                )),
            })
            .collect::<Result<_, _>>()?
    } else {
        t.split(',').map(|s| s.trim().to_string()).collect()
    };
    tokens
        .into_iter()
        .enumerate()
        .map(|(i, tok)| {
            if tok.is_empty() {
                return Err(err("ops", format!("item {i} is empty")));
            }
            match tok.parse::<i64>() {
                Ok(label) => label_name(label).map(str::to_string).ok_or_else(|| {
                    err(
                        "ops",
                        format!(
                            "item {i}: unknown label {label} (use -1 input, 0 conv3x3-bn-relu, 1 conv1x1-bn-relu, 2 maxpool3x3, -2 output)"
                        ),
                    )
                }),
                Err(_) => Ok(tok),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_string_and_json_agree() {
        let a = parse_matrix("0110 0001 0001 0000").unwrap();
        let b = parse_matrix("[[0,1,1,0],[0,0,0,1],[0,0,0,1],[0,0,0,0]]").unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0], vec![0, 1, 1, 0]);
    }

    #[test]
    fn matrix_errors_name_the_problem() {
        let e = parse_matrix("01101").unwrap_err().to_string();
        assert!(e.contains("5 bits"), "{e}");
        let e = parse_matrix("01x0").unwrap_err().to_string();
        assert!(e.contains("'x' at position 2"), "{e}");
        assert!(parse_matrix("[[0,1],[0]").is_err());
    }

    #[test]
    fn ops_forms() {
        let names = parse_ops("input, conv3x3-bn-relu ,output").unwrap();
        assert_eq!(names, ["input", "conv3x3-bn-relu", "output"]);
        assert_eq!(
            parse_ops("-1,0,1,2,-2").unwrap(),
            [
                "input",
                "conv3x3-bn-relu",
                "conv1x1-bn-relu",
                "maxpool3x3",
                "output"
            ]
        );
        assert_eq!(
            parse_ops(r#"["input", 2, "output"]"#).unwrap(),
            ["input", "maxpool3x3", "output"]
        );
        assert!(
            parse_ops("-1,7,-2")
                .unwrap_err()
                .to_string()
                .contains("item 1")
        );
        assert!(parse_ops("input,,output").is_err());
    }
}
