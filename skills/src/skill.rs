//! A skill directory loaded and checked: `omac.yaml` (validated) and `SKILL.md` (checked).

use std::path::{Path, PathBuf};

use crate::error::{Error, Result, Warning};
use crate::meta::{self, Meta, META_FILE};
use crate::skill_md::{self, SkillDoc, SKILL_MD};

/// A loaded skill.
#[derive(Debug, Clone, PartialEq)]
pub struct Skill {
    /// Its name: the directory's name (registration is keyed on it, as in the Go omac).
    pub name: String,
    /// The directory.
    pub dir: PathBuf,
    /// `omac.yaml`.
    pub meta: Meta,
    /// `SKILL.md`'s frontmatter, when the file exists.
    pub doc: Option<SkillDoc>,
    /// Problems that do not stop omac (unknown fields, advice), to show the user.
    pub warnings: Vec<Warning>,
}

impl Skill {
    /// The path of a file of the skill.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Loads and validates the skill in `dir`. A missing `omac.yaml` is [`Error::NotFound`]; a
/// broken `omac.yaml` or `SKILL.md` frontmatter is [`Error::Invalid`] naming the field.
pub fn load(dir: &Path) -> Result<Skill> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::NotFound {
            what: format!("{} is not a skill directory", dir.display()),
            fix: "name the skill's directory".into(),
        })?
        .to_string();
    let meta_path = dir.join(META_FILE);
    let text = match std::fs::read(&meta_path) {
        Ok(b) => String::from_utf8(b).map_err(|_| {
            Error::invalid(
                &meta_path,
                "-",
                "is not UTF-8 text",
                "save omac.yaml as UTF-8",
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::NotFound {
                what: format!("{} does not exist", meta_path.display()),
                fix: "a skill is a directory with an omac.yaml; create one or check the path"
                    .into(),
            })
        }
        Err(e) => return Err(Error::io("reading", &meta_path, e)),
    };
    let (meta, mut warnings) = meta::parse(&text, &meta_path)?;
    warnings.extend(meta.validate(&meta_path, Some(&name))?);

    let md_path = dir.join(SKILL_MD);
    let doc = match std::fs::read(&md_path) {
        Ok(b) => {
            let text = String::from_utf8(b).map_err(|_| {
                Error::invalid(&md_path, "-", "is not UTF-8 text", "save SKILL.md as UTF-8")
            })?;
            let (doc, w) = skill_md::parse(&text, &md_path, Some(&name))?;
            warnings.extend(w);
            Some(doc)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            warnings.push(Warning {
                file: md_path,
                field: "-".into(),
                message: "missing: the agent finds and learns the skill from SKILL.md (omac also \
                          serves it at the mount root); add one with name and description"
                    .into(),
            });
            None
        }
        Err(e) => return Err(Error::io("reading", &md_path, e)),
    };
    Ok(Skill {
        name,
        dir: dir.to_path_buf(),
        meta,
        doc,
        warnings,
    })
}
