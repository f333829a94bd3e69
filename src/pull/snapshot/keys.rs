//! Where a pull keeps its data in the store: staged pages, generations and
//! the pointer to the current one. Only the snapshot module writes these keys;
//! tests that look at or damage the layout get the builders through the
//! `testing` feature.

use crate::platform::amazon::ListKind;

fn kind_byte(kind: ListKind) -> u8 {
    match kind {
        ListKind::Campaigns => b'c',
        ListKind::AdGroups => b'g',
        ListKind::Keywords => b'k',
    }
}

fn profile_prefix(platform: &str, profile: &str) -> Vec<u8> {
    format!("pull/{platform}/{profile}/").into_bytes()
}

/// Prefix of every staged page of a profile (the pages' indexes; a page's
/// entities are under the generation its pull writes).
pub fn stage_prefix(platform: &str, profile: &str) -> Vec<u8> {
    [profile_prefix(platform, profile).as_slice(), b"s/"].concat()
}

/// The staging key of page `page` of `kind`: its index (in layout 1, its
/// first part, and the prefix of its further parts).
pub fn stage_key(platform: &str, profile: &str, kind: ListKind, page: u64) -> Vec<u8> {
    let mut k = stage_prefix(platform, profile);
    k.push(kind_byte(kind));
    k.extend_from_slice(&page.to_be_bytes());
    k
}

/// Prefix of every generation of a profile.
pub fn generations_prefix(platform: &str, profile: &str) -> Vec<u8> {
    [profile_prefix(platform, profile).as_slice(), b"g/"].concat()
}

fn generation_prefix(platform: &str, profile: &str, generation: u64) -> Vec<u8> {
    let mut k = generations_prefix(platform, profile);
    k.extend_from_slice(&generation.to_be_bytes());
    k.push(b'/');
    k
}

pub(super) fn chunk_key(
    platform: &str,
    profile: &str,
    generation: u64,
    kind: ListKind,
    chunk: u64,
) -> Vec<u8> {
    let mut k = generation_prefix(platform, profile, generation);
    k.push(b'c');
    k.push(kind_byte(kind));
    k.extend_from_slice(&(chunk as u32).to_be_bytes());
    k
}

/// The prefix of every part of page `page` of `kind` staged by the pull that
/// writes generation `generation` (layout 2): the page's parts are written
/// under its generation when they are staged, and stay there once it is
/// current.
pub(super) fn page_prefix(
    platform: &str,
    profile: &str,
    generation: u64,
    kind: ListKind,
    page: u64,
) -> Vec<u8> {
    let mut k = generation_prefix(platform, profile, generation);
    k.push(b'p');
    k.push(kind_byte(kind));
    k.extend_from_slice(&page.to_be_bytes());
    k
}

/// The key of part `part` of a page of generation `generation` (layout 2).
pub(super) fn part_key(
    platform: &str,
    profile: &str,
    generation: u64,
    kind: ListKind,
    page: u64,
    part: u32,
) -> Vec<u8> {
    let mut k = page_prefix(platform, profile, generation, kind, page);
    k.extend_from_slice(&part.to_be_bytes());
    k
}

/// The key of a layout-2 generation's directory of `kind`: the first id of
/// every part, with the part's page and number, in id order.
pub(super) fn index_key(platform: &str, profile: &str, generation: u64, kind: ListKind) -> Vec<u8> {
    let mut k = generation_prefix(platform, profile, generation);
    k.push(b'i');
    k.push(kind_byte(kind));
    k
}

pub(super) fn directory_key(
    platform: &str,
    profile: &str,
    generation: u64,
    kind: ListKind,
) -> Vec<u8> {
    let mut k = generation_prefix(platform, profile, generation);
    k.push(b'd');
    k.push(kind_byte(kind));
    k
}

/// The key of the generation pointer of a profile.
pub fn current_key(platform: &str, profile: &str) -> Vec<u8> {
    [profile_prefix(platform, profile).as_slice(), b"current"].concat()
}

/// The generation a data key (under [`generations_prefix`]) belongs to.
pub fn generation_of(platform: &str, profile: &str, key: &[u8]) -> Option<u64> {
    let rest = key.strip_prefix(generations_prefix(platform, profile).as_slice())?;
    let bytes: [u8; 8] = rest.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}
