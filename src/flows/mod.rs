//! The flows: `once` (steps 1–5), `run` (steps 1–6), `exec` (steps 1–5, then execve) and
//! `render` (steps 1 and 4 to stdout), composed from the layers below.
//!
//! A stop signal during the wait or a refresh drops that future: no file is half-written,
//! because every write is synchronous between two await points and goes through a
//! temporary file. `run` holds no database connection between refreshes: an idle
//! connection would keep Aurora Serverless v2 from pausing to 0 ACU.
//!
//! One file a flow: `once` here, [`run`], [`exec`] and [`render`] beside it; the steps
//! they share in `prepare`, the wait's log and status lines in `observe`. Each flow reads
//! top to bottom in the order it runs, on the out-dir [`start`] opened: the dispatcher
//! (`run` in lib.rs) calls it first, once the configuration is valid (and `exec`'s program
//! found), so the configuration goes down one way: the wait (`db`), then the files
//! (`render`), then `status`.

mod exec;
mod observe;
mod prepare;
mod render;
mod run;

pub use exec::exec;
pub use render::render;
pub use run::run;

use crate::config::Config;
use crate::error::Error;
use crate::signal::Wakes;

pub use exec::{Program, program};
pub use prepare::{Started, start};

use prepare::prepare;

/// `once`: steps 1–5 on the out-dir [`start`] opened, then exit.
pub async fn once(
    config: &Config,
    mut started: Started,
    wakes: &mut impl Wakes,
) -> Result<(), Error> {
    prepare(config, &mut started, wakes).await.map(|_| ())
}
