//! `image-factory`: the operator's interface. The commands live in `cli/`,
//! one file each; this parses the command line and runs it.

use std::process::ExitCode;

use clap::Parser;

use image_factory::cli::Cli;

fn main() -> ExitCode {
    Cli::parse().run()
}
