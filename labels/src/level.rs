//! MCS/MLS levels and ranges: parsing, printing and dominance.
//!
//! A level is a sensitivity (`s0`) and a set of categories (`c1,c5`, `c0.c1023`); a range is
//! a low and a high level (`s0-s0:c0.c1023`), the high dominating the low. Parsing is strict
//! (no leading zeros, no duplicates, no backwards `cA.cB`, no translated names such as
//! `SystemLow`): a string that is accepted here is one the kernel reads the same way.
//! Printing is canonical, as the kernel prints a context: runs of three or more categories
//! as `cA.cB`, shorter runs comma-separated, so a printed level compares equal as text.

use std::fmt;
use std::str::FromStr;

/// The largest category number accepted. MCS policies define c0..c1023; MLS policies may
/// define more, but a bound keeps a hostile `c4000000000` from allocating gigabytes.
pub const MAX_CATEGORY: u32 = 65_535;

/// A set of categories, stored as a bitmap. Invariant: no trailing zero words, so the
/// derived equality is set equality.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct CategorySet {
    words: Vec<u64>,
}

impl CategorySet {
    /// The empty set.
    pub fn new() -> CategorySet {
        CategorySet::default()
    }

    /// Adds category `c`; returns whether it was added. A category above
    /// [`MAX_CATEGORY`] is not a category here (the parser rejects it) and is not added.
    pub fn insert(&mut self, c: u32) -> bool {
        if c > MAX_CATEGORY {
            return false;
        }
        let (word, bit) = split(c);
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        let new = self.words[word] & bit == 0;
        self.words[word] |= bit;
        new
    }

    /// Whether `c` is in the set.
    pub fn contains(&self, c: u32) -> bool {
        let (word, bit) = split(c);
        self.words.get(word).is_some_and(|w| w & bit != 0)
    }

    /// Whether every category of `other` is in `self`.
    pub fn is_superset(&self, other: &CategorySet) -> bool {
        other
            .words
            .iter()
            .enumerate()
            .all(|(i, w)| self.words.get(i).copied().unwrap_or(0) & w == *w)
    }

    /// The categories in `self` that are not in `other`, ascending.
    pub fn difference(&self, other: &CategorySet) -> Vec<u32> {
        self.iter().filter(|c| !other.contains(*c)).collect()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The number of categories.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// The categories, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.words.iter().enumerate().flat_map(|(i, w)| {
            (0..64u32)
                .filter(move |b| w & (1u64 << b) != 0)
                .map(move |b| u32::try_from(i).unwrap_or(u32::MAX) * 64 + b)
        })
    }
}

/// Collects categories; as with [`CategorySet::insert`], any above [`MAX_CATEGORY`] are
/// left out.
impl FromIterator<u32> for CategorySet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> CategorySet {
        let mut set = CategorySet::new();
        for c in iter {
            set.insert(c);
        }
        set
    }
}

fn split(c: u32) -> (usize, u64) {
    ((c / 64) as usize, 1u64 << (c % 64))
}

impl fmt::Display for CategorySet {
    /// Kernel style: `c0.c1023`, `c1,c2`, `c1,c3.c7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cats: Vec<u32> = self.iter().collect();
        let mut i = 0;
        let mut first = true;
        while i < cats.len() {
            let start = cats[i];
            let mut end = i;
            while end + 1 < cats.len() && cats[end + 1] == cats[end] + 1 {
                end += 1;
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if end - i >= 2 {
                write!(f, "c{start}.c{}", cats[end])?;
                i = end + 1;
            } else {
                write!(f, "c{start}")?;
                i += 1;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for CategorySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{self}}}")
    }
}

/// One level: a sensitivity and a category set, e.g. `s0:c17,c402`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Level {
    /// The sensitivity number (`s0` is 0).
    pub sensitivity: u32,
    /// The categories.
    pub categories: CategorySet,
}

impl Level {
    /// Whether `self` dominates `other`: sensitivity at least as high and every category
    /// of `other` present. Every level dominates itself.
    pub fn dominates(&self, other: &Level) -> bool {
        self.sensitivity >= other.sensitivity && self.categories.is_superset(&other.categories)
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.sensitivity)?;
        if !self.categories.is_empty() {
            write!(f, ":{}", self.categories)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Level({self})")
    }
}

impl FromStr for Level {
    type Err = LevelError;

    fn from_str(s: &str) -> Result<Level, LevelError> {
        parse_level(s).map_err(|kind| LevelError {
            input: s.to_owned(),
            kind,
        })
    }
}

/// A range `low-high` (`s0-s0:c0.c1023`); a single level `l` is the range `l-l`.
/// Invariant: `high` dominates `low`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Range {
    low: Level,
    high: Level,
}

impl Range {
    /// The range from `low` to `high`, or an error if `high` does not dominate `low`.
    pub fn new(low: Level, high: Level) -> Result<Range, LevelError> {
        if high.dominates(&low) {
            Ok(Range { low, high })
        } else {
            Err(LevelError {
                input: format!("{low}-{high}"),
                kind: LevelErrorKind::HighBelowLow {
                    low: low.to_string(),
                    high: high.to_string(),
                },
            })
        }
    }

    /// The low (current, effective) level.
    pub fn low(&self) -> &Level {
        &self.low
    }

    /// The high (clearance) level.
    pub fn high(&self) -> &Level {
        &self.high
    }

    /// Whether `level` lies in the range: it dominates the low level and the high level
    /// dominates it.
    pub fn contains(&self, level: &Level) -> bool {
        level.dominates(&self.low) && self.high.dominates(level)
    }
}

impl fmt::Display for Range {
    /// `low-high`, or just `low` when both are equal (as `semanage` prints `s0`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.low == self.high {
            write!(f, "{}", self.low)
        } else {
            write!(f, "{}-{}", self.low, self.high)
        }
    }
}

impl fmt::Debug for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Range({self})")
    }
}

impl FromStr for Range {
    type Err = LevelError;

    fn from_str(s: &str) -> Result<Range, LevelError> {
        let err = |kind| LevelError {
            input: s.to_owned(),
            kind,
        };
        let mut parts = s.split('-');
        let low = parts.next().unwrap_or_default();
        let high = parts.next();
        if parts.next().is_some() {
            return Err(err(LevelErrorKind::TooManyDashes));
        }
        let low = parse_level(low).map_err(err)?;
        let high = match high {
            Some(h) => parse_level(h).map_err(err)?,
            None => low.clone(),
        };
        Range::new(low, high).map_err(|e| err(e.kind))
    }
}

/// A level or range that does not parse; Display names the input and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MCS level or range '{input}': {kind}")]
pub struct LevelError {
    /// The text that was parsed.
    pub input: String,
    /// What is wrong with it.
    pub kind: LevelErrorKind,
}

/// What is wrong with a level or range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LevelErrorKind {
    /// Nothing to parse.
    #[error("it is empty")]
    Empty,
    /// The sensitivity part is not `sN`.
    #[error(
        "expected a sensitivity such as s0, found '{0}' (translated names such as SystemLow are not accepted)"
    )]
    BadSensitivity(String),
    /// A category is not `cN`.
    #[error("expected a category such as c5, found '{0}'")]
    BadCategory(String),
    /// A category above [`MAX_CATEGORY`].
    #[error("category c{0} is above c{MAX_CATEGORY}")]
    CategoryTooLarge(u64),
    /// `cA.cB` with A >= B.
    #[error("category range c{0}.c{1} does not run upwards")]
    BackwardsCategoryRange(u32, u32),
    /// The same category twice.
    #[error("category c{0} is given twice")]
    DuplicateCategory(u32),
    /// More than one `-`.
    #[error("a range has one '-' between its low and high level")]
    TooManyDashes,
    /// The high level does not dominate the low level.
    #[error("the high level {high} does not dominate the low level {low}")]
    HighBelowLow {
        /// The low level, printed.
        low: String,
        /// The high level, printed.
        high: String,
    },
}

fn parse_level(s: &str) -> Result<Level, LevelErrorKind> {
    if s.is_empty() {
        return Err(LevelErrorKind::Empty);
    }
    let (sens, cats) = match s.split_once(':') {
        Some((sens, cats)) => (sens, Some(cats)),
        None => (s, None),
    };
    let sensitivity = sens
        .strip_prefix('s')
        .and_then(number)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| LevelErrorKind::BadSensitivity(sens.to_owned()))?;
    let mut categories = CategorySet::new();
    if let Some(cats) = cats {
        for item in cats.split(',') {
            let (first, last) = match item.split_once('.') {
                Some((a, b)) => (category(a)?, Some(category(b)?)),
                None => (category(item)?, None),
            };
            let last = match last {
                Some(last) if last <= first => {
                    return Err(LevelErrorKind::BackwardsCategoryRange(first, last));
                }
                Some(last) => last,
                None => first,
            };
            for c in first..=last {
                if !categories.insert(c) {
                    return Err(LevelErrorKind::DuplicateCategory(c));
                }
            }
        }
    }
    Ok(Level {
        sensitivity,
        categories,
    })
}

fn category(s: &str) -> Result<u32, LevelErrorKind> {
    let n = s
        .strip_prefix('c')
        .and_then(number)
        .ok_or_else(|| LevelErrorKind::BadCategory(s.to_owned()))?;
    u32::try_from(n)
        .ok()
        .filter(|c| *c <= MAX_CATEGORY)
        .ok_or(LevelErrorKind::CategoryTooLarge(n))
}

/// A decimal number without sign or leading zeros (the policy's names are `s0`, `c5`,
/// never `c05`), as u64 so an overlong one is reported rather than wrapped.
fn number(s: &str) -> Option<u64> {
    let ok = !s.is_empty()
        && s.len() <= 19
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    ok.then(|| s.parse().ok()).flatten()
}
