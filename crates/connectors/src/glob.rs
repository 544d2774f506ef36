//! A small glob for the `path` option: `*` (any run of characters) and `?`
//! (one character) in the file-name component only, so that one directory
//! listing resolves a pattern.

use std::path::{Path, PathBuf};

use crate::error::{ConnectorError, Result};

fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?'])
}

/// Splits a path into its directory (empty for the current one) and file name.
fn split(path: &str) -> (&str, &str) {
    match path.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((dir, name)) => (dir, name),
        None => ("", path),
    }
}

/// Checks a pattern without touching the file system.
pub(crate) fn validate(pattern: &str) -> Result<()> {
    let (dir, name) = split(pattern);
    if has_wildcard(dir) {
        return Err(ConnectorError::InvalidPattern {
            pattern: pattern.to_string(),
            reason: "wildcards are only supported in the file name, not in directories".into(),
        });
    }
    if name.is_empty() {
        return Err(ConnectorError::InvalidPattern {
            pattern: pattern.to_string(),
            reason: "the path names a directory, not a file".into(),
        });
    }
    Ok(())
}

/// The files a pattern names, sorted by path.
///
/// A plain path must be an existing file. A pattern must match at least one
/// regular file; names starting with `.` only match a pattern that does too.
pub(crate) fn expand(pattern: &str) -> Result<Vec<PathBuf>> {
    validate(pattern)?;
    let (dir, name) = split(pattern);
    if !has_wildcard(name) {
        let meta =
            std::fs::metadata(pattern).map_err(|e| ConnectorError::io("open", pattern, e))?;
        if !meta.is_file() {
            return Err(ConnectorError::io(
                "open",
                pattern,
                std::io::Error::other("not a regular file"),
            ));
        }
        return Ok(vec![PathBuf::from(pattern)]);
    }
    let dir_path = Path::new(if dir.is_empty() { "." } else { dir });
    let listing_error =
        |e| ConnectorError::io("list directory", dir_path.to_string_lossy().as_ref(), e);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir_path).map_err(listing_error)? {
        let entry = entry.map_err(listing_error)?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        if file_name.starts_with('.') && !name.starts_with('.') {
            continue;
        }
        if !matches(name, file_name) {
            continue;
        }
        let path = if dir.is_empty() {
            PathBuf::from(file_name)
        } else {
            dir_path.join(file_name)
        };
        // Follows symlinks: a link to a file is a file.
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(ConnectorError::NoMatch {
            pattern: pattern.to_string(),
        });
    }
    files.sort();
    Ok(files)
}

/// Whether `name` matches `pattern` (`*` and `?`, no escapes).
pub(crate) fn matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    // Where to resume after the last `*`: (pattern index after it, name index).
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p + 1, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    // Let the last `*` swallow one more character.
                    star = Some((sp, sn + 1));
                    p = sp;
                    n = sn + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;

    #[test]
    fn wildcards() {
        assert!(matches("bids-*.csv", "bids-1.csv"));
        assert!(matches("bids-*.csv", "bids-.csv"));
        assert!(!matches("bids-*.csv", "bids-1.csv.bak"));
        assert!(matches("*", "anything"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("*a*b", "xxaxxb"));
        assert!(!matches("*a*b", "xxaxxbc"));
        assert!(matches("plain.csv", "plain.csv"));
        assert!(!matches("plain.csv", "plain.csvx"));
    }

    #[test]
    fn wildcard_in_directory_is_refused() {
        let err = validate("/data/*/bids.csv").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid path pattern \"/data/*/bids.csv\": wildcards are only supported in the file name, not in directories"
        );
        assert!(validate("/data/").is_err());
    }

    #[test]
    fn expand_sorts_and_filters() {
        let dir = TempDir::new("glob");
        for name in ["b-2.csv", "b-1.csv", "b-10.csv", "c-1.csv", ".b-3.csv"] {
            dir.write(name, "");
        }
        std::fs::create_dir(dir.path().join("b-dir.csv")).unwrap();
        let pattern = format!("{}/b-*.csv", dir.path().display());
        let names: Vec<String> = expand(&pattern)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["b-1.csv", "b-10.csv", "b-2.csv"]);

        let none = format!("{}/z-*.csv", dir.path().display());
        assert_eq!(
            expand(&none).unwrap_err().to_string(),
            format!("no file matches \"{none}\"")
        );
        let missing = format!("{}/missing.csv", dir.path().display());
        assert!(expand(&missing)
            .unwrap_err()
            .to_string()
            .starts_with(&format!("could not open \"{missing}\"")));
    }
}
