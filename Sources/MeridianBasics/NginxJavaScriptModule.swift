/// nginx's JavaScript module (njs), which a gateway with a residency section
/// loads to read every residency header line of a request (nginx 1.22 shows
/// only the first to its variables). Invariant: `path` is where Debian 12's
/// `package` installs it; the gateway configuration loads it from there.
public enum NginxJavaScriptModule {
    public static let path = "/usr/lib/nginx/modules/ngx_http_js_module.so"
    public static let package = "libnginx-mod-http-js"

    /// What `hosts check` and `apply` say about a gateway host without it, after the host's name.
    public static let missingReason = "nginx's JavaScript module \(path) is missing on this gateway host (its residency section needs it to refuse conflicting residency headers): install \(package) (`apt-get install \(package)` on Debian 12)"

    public static func missing(on place: String) -> String { "\(place): \(missingReason)" }

    /// A sh test that succeeds when the module is installed.
    public static let probe = "[ -f \(ShellQuoting.quote(path)) ]"
}
