"""python -m deploy.supervise [--dir DIR] NAME...: run these deploy/Procfile entries under supervisord.

A deployment restarts a process that dies (kill -9, an out-of-memory kill, a crash); honcho stops
everything instead. supervisord restarts each program on its own, stops them all on SIGTERM
(each gets SIGTERM, then SIGKILL after STOP_WAIT_SECONDS), and prints their output on its own
stdout, as honcho did. Its configuration is generated from the Procfile into DIR (a fresh
temporary directory by default), with the control socket that `supervisorctl -c DIR/supervisord.conf`
and `Supervisor` below use. Programs inherit this process's environment.
"""
import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from deploy.processes import PROCFILE, procfile_commands

ROOT = PROCFILE.parent.parent
STOP_WAIT_SECONDS = 30  # in-flight workers finish on SIGTERM (shared.runner)
START_RETRIES = 20  # a program that dies at start-up (its database still down) is retried this often


def _escape(value):
    return str(value).replace("%", "%%")  # supervisord expands %(name)s in values


def write_config(directory, names):
    """supervisord.conf for the Procfile entries `names`, in `directory`; returns its path."""
    directory = Path(directory)
    commands = procfile_commands()
    unknown = [name for name in names if name not in commands]
    if unknown:
        raise SystemExit(f"not in {PROCFILE}: {', '.join(unknown)}")
    sections = [
        "[supervisord]", f"pidfile={_escape(directory / 'supervisord.pid')}",
        f"logfile={_escape(directory / 'supervisord.log')}", "logfile_maxbytes=0", "nodaemon=true", "",
        "[unix_http_server]", f"file={_escape(directory / 'supervisor.sock')}", "chmod=0700", "",
        "[supervisorctl]", f"serverurl=unix://{_escape(directory / 'supervisor.sock')}", "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface", "",
    ]
    for name in names:
        sections += [
            f"[program:{name}]", f"command={_escape(commands[name])}", f"directory={_escape(ROOT)}",
            "autorestart=true", "startsecs=1", f"startretries={START_RETRIES}",
            "stopsignal=TERM", f"stopwaitsecs={STOP_WAIT_SECONDS}", "stopasgroup=true", "killasgroup=true",
            "redirect_stderr=true", "stdout_logfile=/dev/stdout", "stdout_logfile_maxbytes=0", "",
        ]
    path = directory / "supervisord.conf"
    path.write_text("\n".join(sections))
    return path


class Supervisor:
    """Questions to a running supervisord (through supervisorctl on its socket)."""

    def __init__(self, config_path):
        self.config_path = Path(config_path)

    def ctl(self, *args):
        return subprocess.run([sys.executable, "-m", "supervisor.supervisorctl", "-c", str(self.config_path), *args],
                              capture_output=True, text=True, timeout=60)

    def pid(self, name):
        """The program's process id, or None while it is not running."""
        answer = self.ctl("pid", name).stdout.strip()
        return int(answer) if answer.isdigit() and answer != "0" else None

    def status(self):
        """{name: state} (RUNNING, STARTING, BACKOFF, EXITED, FATAL...)."""
        lines = self.ctl("status").stdout.splitlines()
        return {line.split()[0]: line.split()[1] for line in lines if len(line.split()) > 1}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", help="where the generated configuration and control socket go")
    parser.add_argument("names", nargs="+")
    args = parser.parse_args(argv)
    directory = args.dir or tempfile.mkdtemp(prefix="portal-supervisor-")
    Path(directory).mkdir(parents=True, exist_ok=True)
    config = write_config(directory, args.names)
    supervisord = Path(sys.executable).parent / "supervisord"
    os.execv(str(supervisord), [str(supervisord), "-n", "-c", str(config)])


if __name__ == "__main__":
    main()
