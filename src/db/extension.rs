//! Packaging the loadable extension: DuckDB's metadata footer appended to the built library.
//!
//! DuckDB reads the last 534 bytes of an extension file: a 22-byte
//! WebAssembly custom-section header (`00 93 04 10 "duckdb_signature" 80
//! 04`), eight 32-byte NUL-padded metadata fields, and a 256-byte signature
//! (zeros for an unsigned extension, loaded with `allow_unsigned_extensions`).

/// Bytes DuckDB expects after the library.
pub const FOOTER_LEN: usize = 22 + 8 * 32 + 256;

/// What the footer says about the extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Extension version, e.g. `v0.1.0`.
    pub extension_version: String,
    /// Oldest DuckDB C API the extension needs, e.g. `v1.2.0`.
    pub min_capi_version: String,
    /// DuckDB platform name, e.g. `linux_amd64`.
    pub platform: String,
}

/// The DuckDB platform name of the machine this runs on.
pub fn host_platform() -> String {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("{}_{arch}", std::env::consts::OS)
}

/// A field must fit its 32 bytes.
fn field(value: &str) -> Result<[u8; 32], String> {
    let b = value.as_bytes();
    if b.len() > 32 {
        return Err(format!("footer field {value:?} is longer than 32 bytes"));
    }
    let mut f = [0u8; 32];
    f[..b.len()].copy_from_slice(b);
    Ok(f)
}

/// The footer for an unsigned extension with the C-struct ABI.
pub fn footer(m: &Metadata) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(FOOTER_LEN);
    out.extend_from_slice(&[0x00, 0x93, 0x04, 0x10]);
    out.extend_from_slice(b"duckdb_signature");
    out.extend_from_slice(&[0x80, 0x04]);
    for value in [
        "",
        "",
        "",
        "C_STRUCT",
        &m.extension_version,
        &m.min_capi_version,
        &m.platform,
        "4",
    ] {
        out.extend_from_slice(&field(value)?);
    }
    out.extend_from_slice(&[0u8; 256]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_layout() {
        let f = footer(&Metadata {
            extension_version: "v0.1.0".into(),
            min_capi_version: "v1.2.0".into(),
            platform: "linux_amd64".into(),
        })
        .unwrap();
        assert_eq!(f.len(), 534);
        assert_eq!(&f[..4], &[0x00, 0x93, 0x04, 0x10]);
        assert_eq!(&f[4..20], b"duckdb_signature");
        assert_eq!(&f[20..22], &[0x80, 0x04]);
        let fields: Vec<&[u8]> = f[22..22 + 256].chunks(32).collect();
        let text = |b: &[u8]| {
            String::from_utf8(b.iter().copied().take_while(|&c| c != 0).collect()).unwrap()
        };
        assert_eq!(
            fields.iter().map(|b| text(b)).collect::<Vec<_>>(),
            [
                "",
                "",
                "",
                "C_STRUCT",
                "v0.1.0",
                "v1.2.0",
                "linux_amd64",
                "4"
            ]
        );
        assert!(f[278..].iter().all(|&b| b == 0));
        assert!(
            footer(&Metadata {
                extension_version: "v".repeat(33),
                min_capi_version: String::new(),
                platform: String::new()
            })
            .is_err()
        );
    }
}
