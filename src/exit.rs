//! Process exit codes: sysexits(3) plus a shell's conventions. A leaf: it imports nothing
//! of the crate. Which error gets which code is decided in one place, `error::Error::exit_code`.

pub const OK: u8 = 0;
pub const USAGE: u8 = 64;
pub const DATA_ERR: u8 = 65;
pub const UNAVAILABLE: u8 = 69;
pub const SOFTWARE: u8 = 70;
pub const CANT_CREATE: u8 = 73;
pub const NO_PERM: u8 = 77;
pub const CONFIG: u8 = 78;
/// A shell's answer for a command that exists but cannot be executed.
pub const NOT_EXECUTABLE: u8 = 126;
/// A shell's answer for a command that does not exist.
pub const NOT_FOUND: u8 = 127;
/// A shell's convention for "killed by signal N": 128 + N.
pub const SIGINT: u8 = 130;
pub const SIGTERM: u8 = 143;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Reads the README's "Exit codes" section: every code it names is one of these, and
    /// every one of these is named there, so the documentation and the code cannot drift
    /// apart.
    #[test]
    fn exit_codes_are_the_documented_ones() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("\n## Exit codes\n")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("the README has an Exit codes section");
        let documented: BTreeSet<u8> = section
            .split(|c: char| !c.is_ascii_digit())
            .filter(|w| !w.is_empty())
            .map(|w| w.parse().expect("a code"))
            .collect();
        let sysexits = [
            OK,
            USAGE,
            DATA_ERR,
            UNAVAILABLE,
            SOFTWARE,
            CANT_CREATE,
            NO_PERM,
            CONFIG,
        ];
        let shell = [NOT_EXECUTABLE, NOT_FOUND, SIGINT, SIGTERM];
        assert_eq!(sysexits, [0, 64, 65, 69, 70, 73, 77, 78]);
        assert_eq!(shell, [126, 127, 130, 143]);
        let defined: BTreeSet<u8> = sysexits.into_iter().chain(shell).collect();
        assert_eq!(documented, defined);
    }
}
