import Foundation
import MeridianBasics
import MeridianState

/// Where the password of a PostgreSQL login comes from, in the order libpq
/// users expect: the URL (only from `--state` or `$MERIDIAN_STATE`, never a
/// fleet file), the fleet's secret reference, `$PGPASSWORD`, then the
/// password file (`$PGPASSFILE`, else `~/.pgpass`). Invariant: a resolved
/// password is never part of any message.
public struct PostgresLogin: Sendable {
    public let url: PostgresURL
    public let user: String
    public let database: String
    public let password: String?

    /// Resolves the user (URL, `$PGUSER`, the OS user), the database (URL,
    /// `$PGDATABASE`, the user) and the password.
    public init(url: PostgresURL, secretPassword: String? = nil, environment: [String: String], home: String? = nil) {
        self.url = url
        let user = url.user ?? environment["PGUSER"].flatMap { $0.isEmpty ? nil : $0 } ?? ProcessIdentity.current().user
        let database = url.database ?? environment["PGDATABASE"].flatMap { $0.isEmpty ? nil : $0 } ?? user
        self.user = user
        self.database = database
        if let password = url.password ?? secretPassword {
            self.password = password
        } else if let password = environment["PGPASSWORD"] {
            self.password = password
        } else {
            let file = environment["PGPASSFILE"] ?? (home ?? environment["HOME"]).map { "\($0)/.pgpass" }
            let text = file.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) }
            self.password = text.flatMap {
                PasswordFile(text: $0).password(host: url.host ?? "localhost", port: url.port, database: database, user: user)
            }
        }
    }
}

/// A libpq password file: lines `hostname:port:database:username:password`,
/// `*` matching anything, `\:` and `\\` escaping, `#` starting a comment;
/// the first matching line wins.
struct PasswordFile: Sendable {
    let entries: [[String]]

    init(text: String) {
        entries = text.split(whereSeparator: \.isNewline).compactMap { line in
            guard !line.hasPrefix("#") else { return nil }
            var fields: [String] = []
            var field = ""
            var escaped = false
            for character in line {
                if escaped {
                    field.append(character)
                    escaped = false
                } else if character == "\\" {
                    escaped = true
                } else if character == ":" && fields.count < 4 {
                    fields.append(field)
                    field = ""
                } else {
                    field.append(character)
                }
            }
            fields.append(field)
            return fields.count == 5 ? fields : nil
        }
    }

    func password(host: String, port: Int, database: String, user: String) -> String? {
        let wanted = [host, String(port), database, user]
        return entries.first { entry in
            zip(entry.prefix(4), wanted).allSatisfy { $0 == "*" || $0 == $1 }
        }?[4]
    }
}
