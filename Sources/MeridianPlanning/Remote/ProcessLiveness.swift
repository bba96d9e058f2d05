import MeridianBasics

/// The one zombie-aware "is this process alive" check of remote scripts, as
/// a POSIX sh function `alive PID`: `kill -0` alone sees a zombie (a process
/// that exited and was not reaped yet) as alive, /proc's state letter does not.
public enum ProcessLiveness {
    public static let shellFunction = """
    alive() {
      kill -0 "$1" 2>/dev/null || return 1
      if [ -r "/proc/$1/stat" ]; then
        case $(sed 's/^.*) //' "/proc/$1/stat" | cut -c1) in Z|X) return 1 ;; esac
      fi
      return 0
    }
    """
}
