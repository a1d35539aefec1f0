"""A test program for tests/test_command.py: ``prog.py MODE [ARGS...]`` (stdlib only).

Modes: ``echo`` (report what it received in ``report.json``, print x), ``fail`` (stderr
lines, exit 3), ``abort`` (SIGABRT), ``garbage``, ``metrics``, ``multi``, ``file`` (write
``out-<n>.json``), ``big`` (50 MB on stdout, then the fitness), ``empty``.
"""

import json
import os
import sys

mode = sys.argv[1]
if mode == "echo":
    x_arg, params_path, workdir, v_arg = sys.argv[2:6]
    params = json.load(open(params_path))
    report = {
        "argv": sys.argv[2:],
        "x_argv_hex": float(x_arg).hex(),
        "x_json_hex": float(params["x"]).hex(),
        "v_argv": json.loads(v_arg),
        "params": params,
        "cwd": os.getcwd(),
        "workdir": workdir,
        "params_path": params_path,
        "env": {k: v for k, v in os.environ.items() if k.startswith("METALOOP_") or k == "FOO"},
    }
    with open("report.json", "w") as f:
        json.dump(report, f)
    print("some log line")
    print(repr(float(x_arg)))
elif mode == "fail":
    for i in range(40):
        print(f"error line {i}", file=sys.stderr)
    print("the model diverged", file=sys.stderr)
    sys.exit(3)
elif mode == "abort":
    sys.stderr.write("about to abort\n")
    sys.stderr.flush()
    os.abort()
elif mode == "garbage":
    print("1.0")
    print("this is not a fitness")
elif mode == "metrics":
    print("starting")
    print(json.dumps({"fitness": float(sys.argv[2]), "metrics": {"rate": 4.5, "spikes": [1, 2]}}))
elif mode == "multi":
    print(json.dumps([float(sys.argv[2]), 2.0]))
elif mode == "file":
    with open(f"out-{sys.argv[2]}.json", "w") as f:
        json.dump({"fitness": 0.25, "metrics": {"n": int(sys.argv[2])}}, f, indent=2)
    print("not the result")
elif mode == "nofile":
    print("0.5")
elif mode == "big":
    chunk = b"x" * 1023 + b"\n"
    out = sys.stdout.buffer
    for _ in range(50 * 1024):
        out.write(chunk)
    out.write(b"0.125\n")
    out.flush()
    sys.stderr.buffer.write(b"e" * (3 * 1024 * 1024))
elif mode == "longline":
    sys.stdout.write("1" * 200_000 + "\n")
elif mode == "empty":
    pass
else:
    sys.exit(f"unknown mode {mode}")
