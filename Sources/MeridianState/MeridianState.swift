// MeridianState: see the target's comment in Package.swift for its purpose.
