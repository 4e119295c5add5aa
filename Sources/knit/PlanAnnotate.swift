import ArgumentParser
import KnitClient
import KnitCore

struct PlanAnnotate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "annotate",
        abstract: "Add and remove annotations of a Plan.",
        discussion: """
            One request: --remove-key, then --remove, then --add. A key may carry several values. Prints the \
            Plan Detail as JSON.
            """
    )

    @OptionGroup var global: GlobalOptions

    @Option(help: ArgumentHelp("Annotation to add (repeatable).", valueName: "KEY=VALUE"))
    var add: [String] = []

    @Option(help: ArgumentHelp("Annotation to remove (repeatable).", valueName: "KEY=VALUE"))
    var remove: [String] = []

    @Option(
        name: .customLong("remove-key"),
        help: ArgumentHelp(
            "Remove every annotation with this key (repeatable).",
            valueName: "KEY"
        )
    )
    var removeKey: [String] = []

    @Argument(help: ArgumentHelp("The Plan to change.", valueName: "PLAN_ID"))
    var planId: String

    func validate() throws {
        for (flag, texts) in [("--add", add), ("--remove", remove)] {
            for text in texts {
                do { _ = try PlanAnnotation(parsing: text) } catch { throw ValidationError("\(flag): \(error)") }
            }
        }
        if removeKey.contains(where: \.isEmpty) { throw ValidationError("--remove-key: a key must not be empty") }
    }

    func run() throws {
        guard !add.isEmpty || !remove.isEmpty || !removeKey.isEmpty else {
            Console.error("Nothing to do.")
            return
        }
        let change = PlanAnnotationChangeJSON(add: add, remove: remove, removeKey: removeKey)
        try reportingErrors { () throws(KnitClientError) in
            printPlan(try global.apiClient().changePlanAnnotations(planId: planId, change: change))
        }
    }
}
