//! `mintcache shell`: an interactive shell in the style of redis-cli. Every command of the
//! command line works without the `mintcache` prefix (`get user:42`, `set k v --ttl 60`),
//! plus `use VERSION`, `namespace NAME`, `help [COMMAND]` and `quit`. On a terminal it edits
//! lines and keeps a history in `~/.mintcache_history` (rustyline); with stdin from a file or
//! a pipe it runs one command per line, without prompts. As on the command line, stdout
//! carries values and data only when it is not a terminal; the one-line reports are shown on a
//! terminal only (after the value on stdout, or on stderr when only stderr is one).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use clap::{CommandFactory, Parser};
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use super::args::{Cli, OutputArgs, ShellCommand, ShellLine};
use super::errors::usage_message;
use super::exec::Session;
use super::exit::Exit;
use super::output::show_error;
#[cfg(test)]
use super::terminal::Terminal;

/// Where lines come from.
trait Lines {
    /// The next line, or `None` at the end (Ctrl-D, end of file).
    fn next_line(&mut self, prompt: &str) -> Option<String>;
    fn remember(&mut self, _line: &str) {}
}

/// A terminal: line editing and history.
struct Editor {
    editor: DefaultEditor,
    history: Option<PathBuf>,
}

impl Lines for Editor {
    fn next_line(&mut self, prompt: &str) -> Option<String> {
        loop {
            match self.editor.readline(prompt) {
                Ok(line) => return Some(line),
                // Ctrl-C abandons the line being typed, as in redis-cli and bash.
                Err(ReadlineError::Interrupted) => {}
                Err(_) => return None,
            }
        }
    }

    fn remember(&mut self, line: &str) {
        let _ = self.editor.add_history_entry(line);
        if let Some(path) = &self.history {
            // A history that cannot be saved (read-only home) is not worth failing for.
            let _ = self.editor.save_history(path);
        }
    }
}

/// A file or a pipe: one command per line.
struct Piped<'a>(&'a mut dyn BufRead);

impl Lines for Piped<'_> {
    fn next_line(&mut self, _prompt: &str) -> Option<String> {
        let mut line = String::new();
        match self.0.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line),
        }
    }
}

/// Runs the shell until `quit` or the end of input. Exits 0, or with the status of the last
/// command when the commands came from a file or a pipe (so a script can check it).
pub(crate) async fn run(
    session: &mut Session,
    output: OutputArgs,
    stdin: &mut dyn BufRead,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Exit {
    let interactive = session.terminal.stdin;
    let mut editor = if interactive {
        match Editor::new() {
            Ok(editor) => Some(editor),
            Err(e) => {
                let _ = writeln!(stderr, "mintcache: error: cannot use the terminal: {e}");
                return Exit::Usage;
            }
        }
    } else {
        None
    };
    if interactive {
        greet(session, stdout, stderr);
    }
    let mut piped;
    let lines: &mut dyn Lines = match editor.as_mut() {
        Some(editor) => editor,
        None => {
            piped = Piped(stdin);
            &mut piped
        }
    };
    let mut last = Exit::Success;
    loop {
        let prompt = prompt(session);
        let Some(line) = lines.next_line(&prompt) else {
            break;
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        lines.remember(line);
        let Some(parsed) = parse_line(line, output, stdout, stderr) else {
            last = Exit::Usage;
            continue;
        };
        match run_line(session, parsed, output, stdout, stderr).await {
            Some(exit) => last = exit,
            None => break,
        }
    }
    if interactive { Exit::Success } else { last }
}

impl Editor {
    /// A line editor on the terminal, with the history of `~/.mintcache_history` loaded.
    fn new() -> Result<Self, ReadlineError> {
        let mut editor = DefaultEditor::new()?;
        let history =
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".mintcache_history"));
        if let Some(path) = &history {
            let _ = editor.load_history(path);
        }
        Ok(Self { editor, history })
    }
}

/// A greeting is for the person typing: on stdout only when it is their terminal.
fn greet(session: &Session, stdout: &mut dyn Write, stderr: &mut dyn Write) {
    let out: &mut dyn Write = if session.terminal.stdout {
        stdout
    } else {
        stderr
    };
    let _ = writeln!(
        out,
        "mintcache shell on {} ({}). Type `help` for the commands, `quit` to leave.",
        session.connection.endpoints.join(", "),
        session.key_space()
    );
}

/// Splits and parses one line; a line that is not a command is reported here (as JSON when
/// `--json` is on for the shell or given on the line) and gives `None`.
fn parse_line(
    line: &str,
    output: OutputArgs,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Option<ShellLine> {
    let words = match shell_words::split(line) {
        Ok(words) => words,
        Err(e) => {
            let json = output.json || line.split_whitespace().any(|w| w == "--json");
            show_error(Exit::Usage, None, &e.to_string(), json, stdout, stderr);
            return None;
        }
    };
    match ShellLine::try_parse_from(&words) {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            if output.json || words.iter().any(|w| w == "--json") {
                show_error(Exit::Usage, None, &usage_message(&e), true, stdout, stderr);
            } else {
                let _ = write!(stderr, "{}", e.render());
            }
            None
        }
    }
}

/// Runs one parsed line; `None` for `quit`.
async fn run_line(
    session: &mut Session,
    parsed: ShellLine,
    output: OutputArgs,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
) -> Option<Exit> {
    let output = OutputArgs {
        json: output.json || parsed.output.json,
        quiet: output.quiet || parsed.output.quiet,
    };
    Some(match parsed.command {
        ShellCommand::Quit => return None,
        ShellCommand::Help { command } => help(command.as_deref(), stdout, stderr),
        ShellCommand::Use { version } => {
            session.connection.cache_version = Some(version.clone());
            session.client = session.client.with_version(version);
            Exit::Success
        }
        ShellCommand::Namespace { name } => {
            session.connection.namespace = Some(name.clone());
            session.client = session.client.with_namespace(name);
            Exit::Success
        }
        ShellCommand::Cache(command) => {
            // In the shell, values and keys come from the line, never from stdin.
            let mut nothing: &[u8] = b"";
            session
                .run_command(&command, output, &mut nothing, stdout, stderr, true)
                .await
        }
    })
}

fn prompt(session: &Session) -> String {
    if !session.terminal.stdin {
        return String::new();
    }
    let endpoint = session
        .connection
        .endpoints
        .first()
        .map(|e| e.split_once("://").map_or(e.as_str(), |(_, rest)| rest))
        .unwrap_or_default();
    let mut space = String::new();
    if let Some(ns) = session
        .connection
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
    {
        space.push_str(ns);
        space.push('/');
    }
    if let Some(version) = &session.connection.cache_version {
        space.push_str(version);
    }
    if space.is_empty() {
        format!("{endpoint}> ")
    } else {
        format!("{endpoint}[{space}]> ")
    }
}

/// `help`: the commands with their one-line description, or one command's full help.
fn help(command: Option<&str>, stdout: &mut dyn Write, stderr: &mut dyn Write) -> Exit {
    let cli = Cli::command();
    if let Some(name) = command {
        return match cli.find_subcommand(name) {
            Some(sub) => {
                let mut sub = sub.clone();
                let _ = writeln!(stdout, "{}", sub.render_help());
                Exit::Success
            }
            None => {
                let _ = writeln!(stderr, "mintcache: error: no command {name:?}; try `help`");
                Exit::Usage
            }
        };
    }
    let mut text = String::from("Commands (as on the command line, without `mintcache`):\n");
    for sub in cli.get_subcommands().filter(|s| s.get_name() != "shell") {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        let first = about
            .split(". ")
            .next()
            .unwrap_or_default()
            .trim_end_matches('.');
        text.push_str(&format!("  {:<12} {first}\n", sub.get_name()));
    }
    text.push_str(
        "Shell commands:\n  use VERSION  switch the cache version (x-cache-version)\n  \
         namespace NS switch the namespace (x-cache-namespace; '' for none)\n  \
         help [CMD]   this list, or one command's options and examples\n  \
         quit         leave (also `exit`, Ctrl-D)\n\
         Quote values with spaces: set greeting \"hello world\". Add --json to any command.\n",
    );
    let _ = write!(stdout, "{text}");
    Exit::Success
}

/// Whether a session would run the shell interactively (for tests of the prompt).
#[cfg(test)]
pub(crate) fn interactive_prompt(session: &Session) -> String {
    prompt(session)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(args: &[&str], terminal: Terminal) -> Session {
        let mut argv = vec!["mintcache"];
        argv.extend_from_slice(args);
        argv.push("shell");
        let cli = Cli::try_parse_from(argv).expect("valid");
        Session::new(&cli.connection, terminal).expect("session")
    }

    #[tokio::test]
    async fn the_prompt_names_the_endpoint_and_key_space() {
        let s = session(
            &["-e", "http://10.0.0.1:50051", "--cache-version", "r42"],
            Terminal::ALL,
        );
        assert_eq!(interactive_prompt(&s), "10.0.0.1:50051[r42]> ");
        let s = session(&["-n", "shop"], Terminal::ALL);
        assert_eq!(interactive_prompt(&s), "127.0.0.1:50051[shop/]> ");
        let s = session(&[], Terminal::NONE);
        assert_eq!(interactive_prompt(&s), "");
    }

    #[tokio::test]
    async fn help_use_and_errors_work_without_a_server() {
        let mut s = session(&["-e", "127.0.0.1:1", "--retries", "0"], Terminal::NONE);
        let mut stdin: &[u8] =
            b"help\nhelp get\nuse r9\nnamespace shop\nfrobnicate\nset k 'unbalanced\nquit\nget never-run\n";
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let exit = run(
            &mut s,
            OutputArgs {
                json: false,
                quiet: false,
            },
            &mut stdin,
            &mut out,
            &mut err,
        )
        .await;
        let (out, err) = (String::from_utf8_lossy(&out), String::from_utf8_lossy(&err));
        assert!(out.contains("  get-many "), "{out}");
        assert!(out.contains("use VERSION"), "{out}");
        assert!(out.contains("--elect"), "help get: {out}");
        assert!(err.contains("frobnicate"), "{err}");
        assert!(err.contains("mintcache: error:"), "{err}");
        assert_eq!(s.connection.cache_version.as_deref(), Some("r9"));
        assert_eq!(s.connection.namespace.as_deref(), Some("shop"));
        // The last command run was the unbalanced quote (quit stops before `get`).
        assert_eq!(exit, Exit::Usage);
        assert!(!err.contains("never-run"), "{err}");
    }
}
