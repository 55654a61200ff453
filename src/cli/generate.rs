//! `dockwatch generate man|bash|zsh|fish`: the man page and the shell
//! completions, made from the same clap definition the binary parses with,
//! so they never drift from it. Hidden from `--help`; the Debian package
//! build (deploy/debian/build-deb.sh) runs it.

use std::io::Write;
use std::process::ExitCode;

use clap::ValueEnum;
use clap_complete::Shell;

/// What `dockwatch generate` prints.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Artifact {
    /// dockwatch(1) in roff (man -l renders it).
    Man,
    /// For `/usr/share/bash-completion/completions/dockwatch`.
    Bash,
    /// For `/usr/share/zsh/vendor-completions/_dockwatch`.
    Zsh,
    /// For `/usr/share/fish/vendor_completions.d/dockwatch.fish`.
    Fish,
}

/// Writes `what` for the command line `cmd` to `out`; exit 1 if writing failed.
pub fn print(mut cmd: clap::Command, what: Artifact, out: &mut dyn Write) -> ExitCode {
    let name = cmd.get_name().to_owned();
    // Made in memory first: clap_complete panics on a failed write.
    let mut text = Vec::new();
    let made = match what {
        Artifact::Man => man_page(&cmd, &mut text),
        Artifact::Bash | Artifact::Zsh | Artifact::Fish => {
            let shell = match what {
                Artifact::Bash => Shell::Bash,
                Artifact::Zsh => Shell::Zsh,
                _ => Shell::Fish,
            };
            clap_complete::generate(shell, &mut cmd, name, &mut text);
            Ok(())
        }
    };
    match made
        .and_then(|()| out.write_all(&text))
        .and_then(|()| out.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dockwatch generate: cannot write: {e}");
            ExitCode::FAILURE
        }
    }
}

/// dockwatch(1): `clap_mangen`'s sections, with the subcommands described
/// in the page itself (`clap_mangen` would point at `dockwatch-run(1)` and so
/// on, pages that are not installed).
fn man_page(cmd: &clap::Command, out: &mut Vec<u8>) -> std::io::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    writeln!(out, ".SH COMMANDS")?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let mut usage = format!("dockwatch {}", sub.get_name());
        for arg in sub.get_positionals() {
            usage = format!("{usage} <{}>", arg.get_id().as_str().to_uppercase());
        }
        writeln!(out, ".SS \"{}\"", roff(&usage))?;
        paragraph(out, sub.get_long_about().or(sub.get_about()))?;
        for arg in sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !a.is_global_set())
        {
            let name = match arg.get_long() {
                Some(long) if arg.get_action().takes_values() => format!(
                    "\\fB\\-\\-{}\\fR \\fI<{}>\\fR",
                    roff(long),
                    arg.get_id().as_str().to_uppercase()
                ),
                Some(long) => format!("\\fB\\-\\-{}\\fR", roff(long)),
                None => format!("\\fI<{}>\\fR", arg.get_id().as_str().to_uppercase()),
            };
            writeln!(out, ".TP\n{name}")?;
            paragraph(out, arg.get_long_help().or(arg.get_help()))?;
        }
    }
    man.render_version_section(out)
}

/// A help text as one roff paragraph (empty without one).
fn paragraph(out: &mut Vec<u8>, text: Option<&clap::builder::StyledStr>) -> std::io::Result<()> {
    writeln!(
        out,
        "{}",
        roff(&text.map(ToString::to_string).unwrap_or_default())
    )
}

/// `text` as roff body text: backslashes and hyphens escaped, no line read as
/// a request.
fn roff(text: &str) -> String {
    text.lines()
        .map(|line| {
            let line = line.replace('\\', "\\e").replace('-', "\\-");
            if line.starts_with(['.', '\'']) {
                format!("\\&{line}")
            } else if line.is_empty() {
                ".PP".to_owned()
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
