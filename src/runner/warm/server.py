# The warm-start server of crashpoint (see src/warm/mod.rs). It is started
# once per worker as `PYTHON -c <this file> DIR MODULE...` (DIR: the
# script's directory, or empty for `-m`), imports the modules,
# says "ready", then reads one request a line on stdin (JSON: argv, cwd, env,
# stderr path, timeout) and forks a child per request that becomes the run:
# its own process group, the request's working directory and environment,
# stdin and stdout on /dev/null, stderr into the given file, then the script
# (or `-m` module) as `__main__`, exactly as `PYTHON SCRIPT ARGS...` would
# run it; the interpreter's own exit (atexit handlers, flushing, the exit
# status of SystemExit or of an uncaught exception) ends it. The server
# answers "pid N", then, once the child is gone, "exit N", "signal N" or
# "timeout". It kills the child's whole group before it reaps the child, so
# the group id cannot have been reused when it is killed; and since it is a
# child subreaper, whatever the run left that escaped its group (a daemon)
# is re-parented to it and killed before the answer, too.
import ctypes
import json
import os
import signal
import sys
import time

# sys.path[0] as the run will have it: the script's directory (argv[1];
# empty for `-m`, whose runs put their working directory there).
sys.path[:] = [p for p in sys.path if p not in ("", ".")]
sys.path.insert(0, sys.argv[1] or "/")


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


try:
    for _name in sys.argv[2:]:
        __import__(_name)
except BaseException as _e:  # noqa: BLE001 (reported, then the server ends)
    say("error %s: %s" % (type(_e).__name__, _e))
    sys.exit(3)

_libc = None
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    # PR_SET_CHILD_SUBREAPER: orphans of a run come back to the server.
    _libc.prctl(36, 1, 0, 0, 0)
except OSError:
    pass


def children():
    """The server's children (every one is a run's: runs come one at a time)."""
    me = os.getpid()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and int(fields[1]) == me:
            out.append(int(name))
    return out


def sweep():
    """Kills and reaps every child left, and what is re-parented meanwhile."""
    deadline = time.monotonic() + 3
    while True:
        left = children()
        if not left or time.monotonic() > deadline:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.002)
                break


def become_run(req):
    """In the forked child: turn into the run the request describes."""
    os.setpgid(0, 0)
    if _libc is not None:
        # PR_SET_PDEATHSIG: SIGKILL when the server dies (fork cleared it).
        _libc.prctl(1, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != server_pid:
            os._exit(137)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    err = os.open(req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(err, 2)
    os.close(err)
    os.close(null)
    sys.stdin = open(0, "r", closefd=False)
    if req.get("cpus"):
        os.sched_setaffinity(0, req["cpus"])
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    sys.dont_write_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    import tempfile

    # TMPDIR is read on the first use; the server's must not stick.
    tempfile.tempdir = None
    argv = req["argv"]
    import runpy

    if argv[0] == "-m":
        sys.argv = [argv[1]] + argv[2:]
        sys.path[0] = os.getcwd()
        # As `python -m`: sys.argv[0] becomes the module's file.
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    else:
        script = argv[0]
        sys.argv = list(argv)
        sys.path[0] = os.path.dirname(os.path.realpath(script))
        runpy.run_path(os.path.abspath(script), run_name="__main__")


def wait_for(pid, timeout):
    """Waits for the child without reaping it; True if it timed out."""
    deadline = time.monotonic() + timeout
    while True:
        got = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        if got is not None:
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.002)


server_pid = os.getpid()
say("ready")
for line in sys.stdin:
    req = json.loads(line)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        become_run(req)
        # The script returned: the interpreter's normal exit, status 0.
        sys.exit(0)
    say("pid %d" % pid)
    timed_out = wait_for(pid, req["timeout"])
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    _, status = os.waitpid(pid, 0)
    sweep()
    if timed_out:
        say("timeout")
    elif os.WIFSIGNALED(status):
        say("signal %d" % os.WTERMSIG(status))
    else:
        say("exit %d" % os.WEXITSTATUS(status))
