// swift-tools-version:6.2
// Knit: tag-driven pipelines with lineage. One module per layer; C lives only in CKnit* targets.
import PackageDescription

// scripts/test (and so CI) sets KNIT_WARNINGS_AS_ERRORS=1: a warning in Knit's own code fails the build there,
// while a developer's build in progress still only warns.
let warningsAreErrors = Context.environment["KNIT_WARNINGS_AS_ERRORS"] == "1"

let swiftSettings: [SwiftSetting] =
    [
        .enableUpcomingFeature("ExistentialAny"),
        .enableUpcomingFeature("MemberImportVisibility"),
    ] + (warningsAreErrors ? [.treatAllWarnings(as: .error)] : [])

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

        // System support over libc: processes, errno, PATH, temporary directories, tree removal, the wake-up
        // datagram. No Knit types.
        .target(name: "KnitSystem", exclude: ["README.md"], swiftSettings: swiftSettings),

        // One safe wrapper per C library.
        .target(name: "KnitLMDB", dependencies: ["CKnitLMDB"], exclude: ["README.md"], swiftSettings: swiftSettings),
        .target(
            name: "KnitFastCGI",
            dependencies: ["CKnitFastCGI"],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KnitHTTP",
            dependencies: ["CKnitCurl", "CKnitShims", "KnitSystem"],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KnitArchive",
            dependencies: ["CKnitArchive", "KnitCore", "KnitSystem"],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KnitDigest",
            dependencies: ["CKnitCrypto"],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .target(name: "KnitYAML", dependencies: ["CKnitYAML"], exclude: ["README.md"], swiftSettings: swiftSettings),

        // Layers.
        .target(
            name: "KnitStore",
            dependencies: [
                "KnitCore", "KnitSystem", "KnitLMDB", "KnitDigest", .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KnitAPI",
            dependencies: [
                "KnitCore", "KnitSystem", "KnitStore", "KnitArchive", "KnitDigest",
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KnitClient",
            dependencies: ["KnitCore", "KnitSystem", "KnitHTTP", "KnitArchive", "KnitDigest", "KnitYAML"],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KnitScheduler",
            dependencies: [
                "KnitCore", "KnitSystem", "KnitHTTP", "KnitYAML", .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        // The Kubernetes executor's objects, built purely from a Run; and how it reaches the API server.
        .target(
            name: "KnitKubernetes",
            dependencies: ["KnitCore"],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KnitKubeClient",
            dependencies: ["KnitCore", "KnitSystem", "KnitYAML", "KnitHTTP"],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        // The Executor of the scheduler on a Kubernetes cluster: the objects above, created and watched.
        .target(
            name: "KnitKubernetesExecutor",
            dependencies: ["KnitCore", "KnitKubernetes", "KnitKubeClient", "KnitScheduler"],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "KnitTesting",
            dependencies: ["KnitCore", "KnitSystem"],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),

        // What both daemons share: options, logging bootstrap, stop signals.
        .target(
            name: "KnitDaemon",
            dependencies: [
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),

        // Thin executables.
        .executableTarget(
            name: "knitd",
            dependencies: [
                "KnitAPI", "KnitStore", "KnitFastCGI", "KnitSystem", "KnitDaemon",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "knit",
            dependencies: [
                "KnitClient", "KnitCore", "KnitSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "knitadm",
            dependencies: [
                "KnitStore", "KnitCore", "KnitSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),

        .executableTarget(
            name: "knit-scheduler",
            dependencies: [
                "KnitScheduler", "KnitSystem", "KnitStore", "KnitCore", "KnitDaemon", "KnitKubernetesExecutor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["README.md"],
            swiftSettings: swiftSettings
        ),

        // Tests: one target per module, on a shared support target that is never shipped.
        .target(
            name: "KnitTestSupport",
            dependencies: ["KnitSystem"],
            path: "Tests/KnitTestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "KnitSystemTests", dependencies: ["KnitSystem"], swiftSettings: swiftSettings),
        .testTarget(
            name: "KnitCoreTests",
            dependencies: ["KnitCore", "KnitTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KnitLMDBTests",
            dependencies: ["KnitLMDB", "KnitTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "KnitDigestTests", dependencies: ["KnitDigest"], swiftSettings: swiftSettings),
        .testTarget(name: "KnitYAMLTests", dependencies: ["KnitYAML"], swiftSettings: swiftSettings),
        .testTarget(
            name: "KnitHTTPTests",
            dependencies: ["KnitHTTP", "KnitCore", "KnitTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KnitFastCGITests",
            dependencies: ["KnitFastCGI", "KnitSystem"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KnitArchiveTests",
            dependencies: ["KnitArchive", "KnitDigest", "KnitTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KnitStoreTests",
            dependencies: ["KnitStore", "KnitTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KnitAPITests",
            dependencies: [
                "KnitAPI", "KnitStore", "KnitArchive", "KnitCore", "KnitTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KnitClientTests",
            dependencies: ["KnitClient", "KnitArchive", "KnitCore", "KnitTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KnitSchedulerTests",
            dependencies: ["KnitScheduler", "KnitSystem", "KnitCore"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KnitKubernetesTests",
            dependencies: ["KnitKubernetes", "KnitKubeClient", "KnitScheduler", "KnitCore", "KnitTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KnitKubernetesExecutorTests",
            dependencies: [
                "KnitKubernetesExecutor", "KnitKubernetes", "KnitKubeClient", "KnitScheduler", "KnitCore", "KnitSystem",
                "KnitStore", "KnitTesting", "KnitTestSupport", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "KnitLiveTests",
            dependencies: ["KnitTesting", "KnitCore", "KnitTestSupport"],
            swiftSettings: swiftSettings
        ),
    ]
)
