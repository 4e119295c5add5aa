// swift-tools-version:6.0
// Knit: tag-driven pipelines with lineage. One module per layer; C lives only in CKnit* targets.
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

func systemLibrary(_ name: String, pkgConfig: String, apt: String) -> Target {
    .systemLibrary(name: name, path: "Sources/\(name)", pkgConfig: pkgConfig, providers: [.apt([apt])])
}

let package = Package(
    name: "knit",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "knitd", targets: ["knitd"]),
        .executable(name: "knit", targets: ["knit"]),
        .executable(name: "knitadm", targets: ["knitadm"]),
        .executable(name: "knit-scheduler", targets: ["knit-scheduler"]),
        // Libraries are products only so bench/ can measure the store and API in-process.
        .library(name: "KnitCore", targets: ["KnitCore"]),
        .library(name: "KnitStore", targets: ["KnitStore"]),
        .library(name: "KnitAPI", targets: ["KnitAPI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // C libraries, each a module map over a one-line shim header.
        systemLibrary("CKnitFastCGI", pkgConfig: "fcgi", apt: "libfcgi-dev"),
        systemLibrary("CKnitLMDB", pkgConfig: "lmdb", apt: "liblmdb-dev"),
        systemLibrary("CKnitYAML", pkgConfig: "yaml-0.1", apt: "libyaml-dev"),
        systemLibrary("CKnitCurl", pkgConfig: "libcurl", apt: "libcurl4-openssl-dev"),
        systemLibrary("CKnitArchive", pkgConfig: "libarchive", apt: "libarchive-dev"),
        systemLibrary("CKnitCrypto", pkgConfig: "libcrypto", apt: "libssl-dev"),
        .target(name: "CKnitShims", dependencies: ["CKnitCurl"]),

        // Pure domain: no C, no I/O.
        .target(name: "KnitCore", exclude: ["README.md"], swiftSettings: swiftSettings),

        // One safe wrapper per C library.
        .target(name: "KnitLMDB", dependencies: ["CKnitLMDB"], exclude: ["README.md"], swiftSettings: swiftSettings),
        .target(name: "KnitFastCGI", dependencies: ["CKnitFastCGI"], exclude: ["README.md"], swiftSettings: swiftSettings),
        .target(name: "KnitHTTP", dependencies: ["CKnitCurl", "CKnitShims"], exclude: ["README.md"], swiftSettings: swiftSettings),
        .target(name: "KnitArchive", dependencies: ["CKnitArchive"], exclude: ["README.md"], swiftSettings: swiftSettings),
        .target(name: "KnitDigest", dependencies: ["CKnitCrypto"], exclude: ["README.md"], swiftSettings: swiftSettings),
        .target(name: "KnitYAML", dependencies: ["CKnitYAML"], exclude: ["README.md"], swiftSettings: swiftSettings),

        // Layers.
        .target(
            name: "KnitStore",
            dependencies: ["KnitCore", "KnitLMDB", "KnitDigest", .product(name: "Logging", package: "swift-log")],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KnitAPI",
            dependencies: [
                "KnitCore", "KnitStore", "KnitArchive", "KnitDigest",
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KnitClient",
            dependencies: ["KnitCore", "KnitHTTP", "KnitArchive", "KnitDigest", "KnitYAML"],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KnitScheduler",
            dependencies: ["KnitCore", .product(name: "Logging", package: "swift-log")],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .target(name: "KnitTesting", dependencies: ["KnitCore"], exclude: ["README.md"], swiftSettings: swiftSettings),

        // Thin executables.
        .executableTarget(
            name: "knitd",
            dependencies: [
                "KnitAPI", "KnitStore", "KnitFastCGI", "KnitScheduler",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "knit",
            dependencies: [
                "KnitClient", "KnitCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "knitadm",
            dependencies: [
                "KnitStore", "KnitCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),

        .executableTarget(
            name: "knit-scheduler",
            dependencies: [
                "KnitScheduler", "KnitStore", "KnitCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),

        // Tests.
        .testTarget(
            name: "KnitSchedulerTests",
            dependencies: ["KnitScheduler", "KnitCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "KnitCoreTests", dependencies: ["KnitCore"], swiftSettings: swiftSettings),
        .testTarget(name: "KnitStoreTests", dependencies: ["KnitStore", "KnitLMDB"], swiftSettings: swiftSettings),
        .testTarget(
            name: "KnitArchiveTests",
            dependencies: ["KnitArchive", "KnitDigest"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KnitAPITests",
            dependencies: ["KnitAPI", "KnitStore", "KnitArchive", "KnitCore", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KnitClientTests",
            dependencies: ["KnitClient", "KnitYAML", "KnitHTTP", "KnitArchive", "KnitCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KnitLiveTests",
            dependencies: ["KnitTesting", "KnitCore"],
            swiftSettings: swiftSettings
        ),
    ]
)
