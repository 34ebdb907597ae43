//! The admin token: read once at start from a file or an environment variable named in the
//! configuration, never from the command line (where `ps` would show it).

use std::path::Path;

/// Reads the API token. `file` and `env` name where it is; giving both is an error (which one
/// wins would be a surprise). Neither = `Ok(None)`: the API is read-only. Surrounding
/// whitespace (the trailing newline of `echo token > file`) is dropped; an empty token is an
/// error, since it would let any `Bearer ` header through.
pub fn load_token(file: Option<&Path>, env: Option<&str>) -> Result<Option<String>, String> {
    let token = match (file, env) {
        (None, None) => return Ok(None),
        (Some(f), Some(e)) => {
            return Err(format!(
                "API token: give either a file ({}) or an environment variable ({e}), not both",
                f.display()
            ));
        }
        (Some(f), None) => {
            let raw = std::fs::read_to_string(f)
                .map_err(|e| format!("API token file {}: {e}", f.display()))?;
            warn_if_readable_by_others(f);
            raw
        }
        (None, Some(e)) => std::env::var(e).map_err(|err| match err {
            std::env::VarError::NotPresent => {
                format!("API token: environment variable {e} is not set")
            }
            std::env::VarError::NotUnicode(_) => {
                format!("API token: environment variable {e} is not valid UTF-8")
            }
        })?,
    };
    let token = token.trim();
    if token.is_empty() {
        return Err("API token is empty".into());
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("API token must not contain whitespace or control characters".into());
    }
    Ok(Some(token.to_string()))
}

#[cfg(unix)]
fn warn_if_readable_by_others(f: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(f)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(file = %f.display(), "API token file is readable by group or others");
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources() {
        assert_eq!(load_token(None, None), Ok(None));
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("token");
        std::fs::write(&f, "s3cret\n").expect("write");
        assert_eq!(load_token(Some(&f), None), Ok(Some("s3cret".into())));
        assert!(load_token(Some(&f), Some("X")).is_err());
        assert!(load_token(Some(&dir.path().join("missing")), None).is_err());
        std::fs::write(&f, "  \n").expect("write");
        assert!(load_token(Some(&f), None).is_err());
        std::fs::write(&f, "two words").expect("write");
        assert!(load_token(Some(&f), None).is_err());
        assert!(load_token(None, Some("GSLBD_TEST_SURELY_UNSET_TOKEN_VAR")).is_err());
    }
}
