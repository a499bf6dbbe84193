# Only /tmp and the working directory are writable, and judge-strict allows no file to be written at all.
open("/usr/pwned", "w").write("x")
