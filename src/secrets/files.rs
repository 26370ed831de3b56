//! `KEY=VALUE` files (`--secrets-from`, `--fields-from`, `omac secrets import --from`), read
//! as the Go omac reads them: lines trimmed, blank lines and `#` comments skipped, split at
//! the first `=`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::exit::{Code, Failure};
use crate::secrets::Secret;

/// Parses `KEY=VALUE` text; the error names the line (never its value).
pub fn parse(text: &str, what: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!(
                "{what}: line {} has no '=' (expected KEY=VALUE)",
                i + 1
            ));
        };
        out.push((k.trim().to_string(), v.to_string()));
    }
    Ok(out)
}

/// Reads a secrets file into secrets; warns when others may read the file.
pub fn read_secrets(path: &Path) -> anyhow::Result<BTreeMap<String, Secret>> {
    let bytes =
        Zeroizing::new(std::fs::read(path).map_err(|e| {
            Failure::new(Code::Config, format!("cannot read {}: {e}", path.display()))
        })?);
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            eprintln!(
                "omac: warning: {} is readable by other users; `chmod 600` it (it holds secrets)",
                path.display()
            );
        }
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        Failure::new(
            Code::Config,
            format!("{} is not UTF-8 text", path.display()),
        )
    })?;
    let pairs =
        parse(text, &path.display().to_string()).map_err(|e| Failure::new(Code::Config, e))?;
    Ok(pairs
        .into_iter()
        .map(|(k, v)| (k, Secret::from_string(v)))
        .collect())
}

/// Reads a config fields file.
pub fn read_fields(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::new(Code::Config, format!("cannot read {}: {e}", path.display())))?;
    let pairs =
        parse(&text, &path.display().to_string()).map_err(|e| Failure::new(Code::Config, e))?;
    Ok(pairs.into_iter().collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn go_file_rules() {
        let p = super::parse("# c\n\n A=1 \nB==x=\nC=\n", "f").unwrap();
        assert_eq!(
            p,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "=x=".into()),
                ("C".into(), "".into())
            ]
        );
        let e = super::parse("A=1\nnope\n", "f").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
    }
}
