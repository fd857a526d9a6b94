//! The crate's shape, checked from its sources: modules use each other one way only (no import
//! circle), and platform differences live behind `cfg` in `platform.rs` alone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each module's code without comments and without its `#[cfg(test)]` tests.
fn modules() -> BTreeMap<String, String> {
  let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
  let mut modules = BTreeMap::new();
  // The udp module's files are named `udp/<file>`: checked for cfg and msghdr use like the rest.
  let files = std::fs::read_dir(&src)
    .unwrap()
    .chain(std::fs::read_dir(src.join("udp")).unwrap())
    .map(|entry| entry.unwrap().path());
  for path in files {
    if path.extension().is_none_or(|ext| ext != "rs") {
      continue;
    }
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    let name = if path.parent().unwrap().ends_with("udp") {
      format!("udp/{stem}")
    } else {
      stem
    };
    let text = std::fs::read_to_string(&path).unwrap();
    let code = text
      .split("#[cfg(test)]\nmod tests")
      .next()
      .unwrap()
      .lines()
      .filter(|line| !line.trim_start().starts_with("//"))
      .collect::<Vec<_>>()
      .join("\n");
    modules.insert(name, code);
  }
  modules
}

/// Which crate modules each module names (`crate::x`).
fn uses(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
  modules
    .iter()
    .map(|(name, code)| {
      let used = code
        .match_indices("crate::")
        .map(|(at, _)| {
          code[at + "crate::".len()..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect::<String>()
        })
        .filter(|used| used != name && modules.contains_key(used))
        .collect();
      (name.clone(), used)
    })
    .collect()
}

#[test]
fn modules_use_each_other_one_way_only() {
  let graph = uses(&modules());
  // Peel off modules that use nothing left; whatever remains lies on a circle.
  let mut left = graph.clone();
  loop {
    let leaves: Vec<String> = left
      .iter()
      .filter(|(_, used)| used.iter().all(|u| !left.contains_key(u)))
      .map(|(name, _)| name.clone())
      .collect();
    if leaves.is_empty() {
      break;
    }
    for leaf in leaves {
      left.remove(&leaf);
    }
  }
  assert!(left.is_empty(), "modules on an import circle: {left:?}");
}

#[test]
fn only_the_platform_module_asks_which_system_it_is_on() {
  // consts.rs names values that exist on Linux only; it has nothing to choose between.
  let allowed = ["platform", "consts", "udp/platform"];
  for (name, code) in modules() {
    if !allowed.contains(&name.as_str()) {
      assert!(
        !code.contains("target_os"),
        "{name}.rs has a cfg(target_os) of its own"
      );
    }
  }
}

#[test]
fn only_the_msghdr_module_fills_in_a_msghdr() {
  // platform.rs hands the same headers to the *mmsg calls, and nothing else does.
  let owners = [
    ("libc::msghdr", "msghdr"),
    ("libc::sendmsg(", "msghdr"),
    ("libc::recvmsg(", "msghdr"),
    ("libc::mmsghdr", "platform"),
    ("libc::sendmmsg(", "platform"),
    ("libc::recvmmsg(", "platform"),
  ];
  for (name, code) in modules() {
    for (needle, owner) in owners {
      assert!(
        name == owner || !code.contains(needle),
        "{name}.rs uses {needle} itself"
      );
    }
  }
}
