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
    use super::*;

    /// Pins the README's table, so the documentation and the code cannot drift apart.
    #[test]
    fn exit_codes_are_the_documented_ones() {
        assert_eq!(
            [
                OK,
                USAGE,
                DATA_ERR,
                UNAVAILABLE,
                SOFTWARE,
                CANT_CREATE,
                NO_PERM,
                CONFIG
            ],
            [0, 64, 65, 69, 70, 73, 77, 78]
        );
        assert_eq!(
            [NOT_EXECUTABLE, NOT_FOUND, SIGINT, SIGTERM],
            [126, 127, 130, 143]
        );
    }
}
