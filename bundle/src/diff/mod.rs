//! `omac bundle diff A B`: what B allows that A does not, what A allows that B does not,
//! and every other difference, by the categories of `explain`.
//!
//! Both bundles are explained first; the comparison runs on the two [`Explanation`]s, so
//! it judges effects (a path readable, a syscall refused) rather than spellings. A path
//! counts as newly readable or writable only when no path of the other bundle with the same
//! right contains it. Whatever the categories miss is still caught: when they find nothing
//! but the files differ, the differing JSON paths are listed as other differences.

mod other;
mod widen;

use std::collections::BTreeSet;
use std::fmt::Write;

use serde::Serialize;
use serde_json::Value;

use crate::explain;

use crate::ext::ANNOTATION;
use crate::load::Loaded;

/// Version of the diff's JSON layout.
pub const FORMAT: u32 = 1;

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// The explain section: `filesystem`, `network`, `syscalls`, `environment`, `skills`,
    /// `isolation`, `enforcement`, `command` or `files`.
    pub category: String,
    /// What changed, as a key for machines (`readable`, `domain-allowed`, ...).
    pub aspect: String,
    /// The subject (a path, a domain, a syscall, a variable, ...).
    pub subject: String,
    /// The change in words.
    pub text: String,
}

/// The comparison of two bundles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    /// [`FORMAT`].
    pub format: u32,
    /// Bundle A's directory.
    pub a: String,
    /// Bundle B's directory.
    pub b: String,
    /// What B allows that A does not.
    pub b_allows: Vec<Change>,
    /// What A allows that B does not.
    pub a_allows: Vec<Change>,
    /// Differences that widen neither (command, ids, names, values).
    pub other: Vec<Change>,
}

impl Diff {
    /// Whether the bundles are the same.
    pub fn is_empty(&self) -> bool {
        self.b_allows.is_empty() && self.a_allows.is_empty() && self.other.is_empty()
    }
}

pub(crate) fn change(
    category: &str,
    aspect: &str,
    subject: impl Into<String>,
    text: String,
) -> Change {
    Change {
        category: category.into(),
        aspect: aspect.into(),
        subject: subject.into(),
        text,
    }
}

/// Paths where two JSON documents differ (at most `limit`).
fn json_paths(a: &Value, b: &Value, at: &str, out: &mut Vec<String>, limit: usize) {
    if out.len() >= limit || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                json_paths(va, vb, &format!("{at}.{k}"), out, limit);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                json_paths(va, vb, &format!("{at}[{i}]"), out, limit);
            }
        }
        _ => out.push(at.to_string()),
    }
}

fn file_differences(a: &Loaded, b: &Loaded) -> Vec<Change> {
    let value = |l: &Loaded| {
        let mut c = serde_json::to_value(&l.config).unwrap_or(Value::Null);
        // The digest follows omac.json, which is compared on its own.
        if let Some(ann) = c.get_mut("annotations").and_then(Value::as_object_mut) {
            ann.remove(ANNOTATION);
        }
        let e = serde_json::to_value(&l.ext).unwrap_or(Value::Null);
        (c, e)
    };
    let ((ac, ae), (bc, be)) = (value(a), value(b));
    let mut paths = Vec::new();
    json_paths(&ac, &bc, "config.json", &mut paths, 20);
    json_paths(&ae, &be, "omac.json", &mut paths, 40);
    paths
        .into_iter()
        .map(|p| change("files", "value", &p, format!("{p} differs")))
        .collect()
}

/// Compares bundle `a` with bundle `b`.
pub fn diff(a: &Loaded, b: &Loaded) -> Diff {
    let (xa, xb) = (explain::explain(a), explain::explain(b));
    let mut d = Diff {
        format: FORMAT,
        a: xa.bundle.dir.clone(),
        b: xb.bundle.dir.clone(),
        b_allows: widen::widening(&xa, &xb),
        a_allows: widen::widening(&xb, &xa),
        other: other::other(&xa, &xb),
    };
    if d.is_empty() {
        d.other = file_differences(a, b);
    }
    d
}

/// The diff as canonical JSON.
pub fn to_json(d: &Diff) -> Vec<u8> {
    crate::render::canonical_json(d)
}

/// The diff in plain words.
pub fn render(d: &Diff) -> String {
    let mut o = String::new();
    if d.is_empty() {
        let _ = writeln!(o, "The bundles {} and {} allow the same.", d.a, d.b);
        return o;
    }
    let section = |o: &mut String, title: String, items: &[Change]| {
        let _ = writeln!(o, "{title}");
        if items.is_empty() {
            let _ = writeln!(o, "  nothing");
        }
        for c in items {
            let _ = writeln!(o, "  {}: {}", c.category, c.text);
        }
    };
    section(
        &mut o,
        format!("B ({}) allows what A ({}) does not:", d.b, d.a),
        &d.b_allows,
    );
    section(
        &mut o,
        format!("A ({}) allows what B ({}) does not:", d.a, d.b),
        &d.a_allows,
    );
    if !d.other.is_empty() {
        section(&mut o, "Other differences (A -> B):".into(), &d.other);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ext::SkillLayer;
    use crate::testing::{s, scratch};

    fn has(v: &[Change], aspect: &str, subject: &str) -> bool {
        v.iter().any(|c| c.aspect == aspect && c.subject == subject)
    }

    #[test]
    fn equal_bundles_have_no_difference() {
        let sc = scratch();
        let a = sc.bundle("a", r#"{"extends": "default"}"#, Default::default());
        let b = sc.bundle("b", r#"{"extends": "default"}"#, Default::default());
        let d = diff(&a, &b);
        // Only the profile's source file differs, and it is reported as such.
        assert!(d.b_allows.is_empty() && d.a_allows.is_empty(), "{d:?}");
        assert_eq!(d.other.len(), 1, "{d:?}");
        assert_eq!(d.other[0].aspect, "profile");
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn each_direction_says_what_it_widens_and_the_two_mirror() {
        let sc = scratch();
        let strict = sc.bundle("s", r#"{"extends": "strict"}"#, Default::default());
        let wide = sc.bundle(
            "w",
            r#"{"extends": "open", "filesystem": {"allow": ["~"], "override_deny": ["~/.ssh"]},
                "environment": {"allow_vars": ["AWS_*"]},
                "seccomp": {"lift": ["@io_uring"]},
                "enforcement": {"require": ["namespaces"]}}"#,
            Default::default(),
        );
        let d = diff(&strict, &wide);
        let b = &d.b_allows;
        assert!(has(b, "mode", "open"), "{b:#?}");
        assert!(has(b, "namespace", "host"));
        assert!(has(b, "readable", &s(&sc.path("home"))));
        assert!(has(b, "writable", &s(&sc.path("home"))));
        assert!(has(b, "not-refused", "io_uring_setup"));
        assert!(has(b, "not-refused", "ptrace"));
        assert!(has(b, "passed", "AWS_*"));
        assert!(has(b, "not-required", "landlock-fs"));
        assert!(has(b, "not-required", "seccomp"));
        // ~/.ssh is in view in B and no longer masked; in A it was not in view at all.
        assert!(!has(b, "unmasked", &s(&sc.path("home/.ssh"))));
        // A's scratch home is what B replaces with the real one.
        assert!(has(&d.a_allows, "scratch", &s(&sc.path("home"))));
        let r = diff(&wide, &strict);
        assert_eq!(r.a_allows, d.b_allows);
        assert_eq!(r.b_allows, d.a_allows);
    }

    #[test]
    fn lifting_a_mask_inside_the_view_is_a_widening() {
        let sc = scratch();
        let a = sc.bundle(
            "a",
            r#"{"filesystem": {"allow": ["~"]}}"#,
            Default::default(),
        );
        let b = sc.bundle(
            "b",
            r#"{"filesystem": {"allow": ["~"], "override_deny": ["~/.ssh", ".env"]}}"#,
            Default::default(),
        );
        let d = diff(&a, &b);
        assert!(
            has(&d.b_allows, "unmasked", &s(&sc.path("home/.ssh"))),
            "{d:#?}"
        );
        assert!(d.a_allows.is_empty(), "{d:#?}");
    }

    #[test]
    fn containment_decides_whether_a_path_is_new() {
        let sc = scratch();
        std::fs::create_dir_all(sc.path("x/y")).unwrap();
        let x = s(&sc.path("x"));
        let a = sc.bundle(
            "a",
            &format!(r#"{{"filesystem": {{"read": ["{x}"]}}}}"#),
            Default::default(),
        );
        let b = sc.bundle(
            "b",
            &format!(r#"{{"filesystem": {{"read": ["{x}"], "allow": ["{x}/y"]}}}}"#),
            Default::default(),
        );
        let d = diff(&a, &b);
        assert!(has(&d.b_allows, "writable", &format!("{x}/y")), "{d:#?}");
        assert!(!has(&d.b_allows, "readable", &format!("{x}/y")), "{d:#?}");
    }

    #[test]
    fn a_changed_skill_digest_is_reported() {
        let sc = scratch();
        let layer = |hex: char| crate::Extras {
            skills: vec![SkillLayer {
                name: "echo".into(),
                digest: format!("sha256:{}", hex.to_string().repeat(64)),
                source: "/skills/echo".into(),
            }],
            ..Default::default()
        };
        let a = sc.bundle("a", "{}", layer('a'));
        let b = sc.bundle("b", "{}", layer('b'));
        let d = diff(&a, &b);
        assert!(has(&d.b_allows, "skill-changed", "echo"), "{d:#?}");
        assert!(has(&d.a_allows, "skill-changed", "echo"), "{d:#?}");
        let none = sc.bundle("n", "{}", Default::default());
        assert!(has(&diff(&none, &a).b_allows, "skill", "echo"));
    }

    #[test]
    fn what_the_categories_miss_is_still_a_difference() {
        let sc = scratch();
        let a = sc.bundle("a", "{}", Default::default());
        let mut b = a.clone();
        let m = b
            .config
            .mounts
            .iter_mut()
            .find(|m| m.destination == "/tmp")
            .unwrap();
        m.options.push("size=1m".into());
        let d = diff(&a, &b);
        assert!(!d.is_empty());
        assert!(
            d.other.iter().any(|c| c.aspect == "scratch /tmp size"),
            "{d:#?}"
        );
        // A difference no category knows is listed by its JSON path.
        let mut c = a.clone();
        c.config.linux.rootfs_propagation = Some("slave".into());
        let d = diff(&a, &c);
        assert!(
            d.other.iter().any(
                |c| c.category == "files" && c.subject == "config.json.linux.rootfsPropagation"
            ),
            "{d:#?}"
        );
        assert!(render(&d).contains("Other differences"));
    }
}
