/// meridian's own version, printed by `meridian --version`; raised with
/// each release so a refused saved plan can name the version that reads it.
public enum MeridianVersion {
    public static let current = "0.4.0"
}
