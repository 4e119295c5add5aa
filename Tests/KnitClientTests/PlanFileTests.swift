import KnitClient
import KnitCore
import KnitSystem
import KnitTestSupport
import Testing

@Suite struct PlanFileTests {
    private func errorText(_ yaml: String) -> String? {
        do {
            _ = try PlanFile.parse(yaml, file: "plan.yaml")
            return nil
        } catch { return error.description }
    }

    @Test func tutorialTrainingPlan() throws {
        let spec = try PlanFile.parse(TutorialPlans.train, file: "train.plan.yaml")
        #expect(
            spec
                == PlanSpecJSON(
                    image: "localhost:${PORT}/knitfab-first-train:v1.0",
                    entrypoint: ["python", "-u", "train.py"],
                    args: ["--dataset", "/in/dataset", "--save-to", "/out/model"],
                    inputs: [
                        MountpointJSON(
                            path: "/in/dataset",
                            tags: TagSet(
                                ["project:first-knitfab", "type:dataset", "mode:training"].map {
                                    try! KnitCore.Tag(parsing: $0)
                                }
                            )
                        )
                    ],
                    outputs: [
                        MountpointJSON(
                            path: "/out/model",
                            tags: TagSet(
                                ["project:first-knitfab", "type:model", "description:2 layer CNN + 2 layer Affine"].map
                                {
                                    try! KnitCore.Tag(parsing: $0)
                                }
                            )
                        )
                    ],
                    log: LogPointJSON(
                        tags: TagSet(["project:first-knitfab", "type:log"].map { try! KnitCore.Tag(parsing: $0) })
                    ),
                    active: true,
                    resources: ["cpu": "1", "memory": "1Gi"]
                )
        )
        let plan = try Plan(validating: spec)
        #expect(plan.version == "v1.0")
        #expect(plan.cpuMillicores == 1000)
    }

    @Test func tutorialValidationPlanAndTemplates() throws {
        let validation = try PlanFile.parse(TutorialPlans.validation, file: "validation.plan.yaml")
        #expect(validation.image == "localhost:${PORT}/knitfab-first-validation:v1.0")
        #expect(validation.args == [])
        #expect(validation.outputs.isEmpty)
        #expect(validation.inputs.map(\.path) == ["/in/dataset", "/in/model"])
        #expect(validation.inputs[1].tags.map(\.description) == ["project:first-knitfab", "type:model"])
        #expect(validation.log?.tags.count == 3)
        #expect(validation.entrypoint?.last == "/in/model/model.pth")

        let trainTemplate = try PlanFile.parse(TutorialPlans.trainTemplate, file: "t.yaml")
        #expect(trainTemplate.annotations == [])
        #expect(trainTemplate.image == "${YOUR_KNITFAB_NODE}:${PORT}/knitfab-first-train:v1.0")
        #expect(trainTemplate.inputs.map(\.tags) == [TagSet([KnitCore.Tag(key: "type", value: "dataset")])])
        let validationTemplate = try PlanFile.parse(TutorialPlans.validationTemplate, file: "t.yaml")
        #expect(validationTemplate.inputs.map(\.path) == ["/in/dataset", "/in/model/model.pth"])
        #expect(validationTemplate.resources == ["cpu": "1", "memory": "1Gi"])
    }

    @Test func unknownKeysSuggestTheDocumentedSpelling() {
        let text = errorText(
            """
            image: "busybox:1.36"
            inputs:
              - path: /in
                tags: ["type:x"]
                tag: ["type:y"]
            logs:
              tags: ["type:log"]
            annoation: ["a=b"]
            resouce: {cpu: 1}
            on_node: {must: ["a=b"], musts: []}
            frobnicate: 1
            """
        )
        #expect(
            text == """
                plan.yaml:5:5: error: unknown key "inputs[0].tag" (did you mean "tags"?)
                plan.yaml:6:1: error: unknown key "logs" (did you mean "log"?)
                plan.yaml:8:1: error: unknown key "annoation" (did you mean "annotations"?)
                plan.yaml:9:1: error: unknown key "resouce" (did you mean "resources"?)
                plan.yaml:10:26: error: unknown key "on_node.musts" (did you mean "must"?)
                plan.yaml:11:1: error: unknown key "frobnicate" (known keys: annotations, image, entrypoint, args, inputs, outputs, log, active, resources, on_node, service_account)
                """
        )
    }

    @Test func validationProblemsPointAtTheirNodes() {
        let text = errorText(
            """
            image: busybox:1.36
            inputs:
              - path: /in/a
                tags:
                  - type:a
                  - knit#transient:processing
              - path: in/x
                tags: ["type:b"]
            outputs:
              - path: /in/a/out
                tags: []
            on_node:
              must: ["gpu"]
            resources:
              cpu: lots
            """
        )
        #expect(
            text == """
                plan.yaml:6:9: error: inputs[0].tags: "knit#transient:processing": only knit#id and knit#timestamp may be required by an input
                plan.yaml:7:11: error: inputs[1].path: "in/x" is not absolute
                plan.yaml:10:11: error: outputs[0].path: "/in/a/out" is inside inputs[0].path "/in/a"
                plan.yaml:13:10: error: on_node.must[0]: "gpu" is not KEY=VALUE
                plan.yaml:15:8: error: resources.cpu: "lots" is not a number (e.g. 1, 0.5, 500m, 1Gi)
                """
        )
    }

    /// F8, F17: `knit plan apply` refuses, before sending anything, limits and paths no container can run with.
    @Test func F8F17LimitsAndPathsNoContainerCanUseAreReportedWithTheirLine() {
        let text =
            errorText(
                """
                image: "repo/train:v1"
                inputs:
                  - path: "/in/a:rw"
                    tags: ["type:a"]
                resources:
                  memory: 100Ei
                  cpu: "0"
                """
            ) ?? ""
        #expect(text.contains("plan.yaml:3:11: error: inputs[0].path: \"/in/a:rw\" contains ':' or ','"), "\(text)")
        #expect(text.contains("plan.yaml:6:11: error: resources.memory: \"100Ei\" is too large"), "\(text)")
        #expect(text.contains("plan.yaml:7:8: error: resources.cpu: \"0\": a cpu limit must be above 0"), "\(text)")
    }

    @Test func missingPartsAndTypeErrors() {
        #expect(errorText("image: busybox:1.36\n") == "plan.yaml: error: inputs: a plan needs at least one input")
        #expect(errorText("") == "plan.yaml: error: plan file is empty")
        #expect(
            errorText("- a\n")
                == "plan.yaml:1:1: error: a plan file must be a mapping of keys (image, inputs, outputs, …), not a sequence"
        )
        #expect(
            errorText("image: [a]\ninputs: /in\nactive: \"yes\"\nentrypoint: [1, [2]]\n") == """
                plan.yaml:1:8: error: image: expected a string, not a sequence
                plan.yaml:2:9: error: inputs: expected a sequence of {path, tags}, not a scalar
                plan.yaml:3:9: error: active: expected true or false
                plan.yaml:4:17: error: entrypoint[1]: expected a string, not a sequence
                """
        )
        #expect(
            errorText("image: a:b\ninputs:\n  - path: /in\n    tags: [\"nocolon\", {key: k}]\n") == """
                plan.yaml:4:12: error: inputs[0].tags[0]: tag 'nocolon' has no ':' (expected KEY:VALUE)
                plan.yaml:4:23: error: inputs[0].tags[1]: a tag mapping needs "key" and "value"
                """
        )
        let syntax = errorText("image: [unclosed\n")
        #expect(syntax?.hasPrefix("plan.yaml:") == true)
        #expect(syntax?.contains(": error: ") == true)
    }

    @Test func scalarsAreTypedAsKnitfabReadsThem() throws {
        let spec = try PlanFile.parse(
            """
            image: busybox:1.36
            inputs:
              - path: /in/
                tags: [{key: type, value: "x"}, "mode: train"]
            log: null
            active: false
            resources: {cpu: 0.5, memory: 512Mi, nvidia.com/gpu: 1}
            service_account: ~
            on_node: {may: ["pool=spot"]}
            """,
            file: "p.yaml"
        )
        #expect(spec.inputs[0].path == "/in/")
        #expect(spec.inputs[0].tags.map(\.description) == ["mode:train", "type:x"])
        #expect(spec.log == nil)
        #expect(spec.active == false)
        #expect(spec.resources == ["cpu": "0.5", "memory": "512Mi", "nvidia.com/gpu": "1"])
        #expect(spec.serviceAccount == nil)
        #expect(spec.onNode == OnNodeJSON(may: ["pool=spot"]))
        // Without validation, a spec the server must judge still comes through.
        let unchecked = try PlanFile.parse("image: nover\ninputs: []\n", file: "p.yaml", validate: false)
        #expect(unchecked.image == "nover")
    }

    @Test func loadReadsAFile() throws {
        let dir = TemporaryDirectory()
        dir.write("plan.yaml", TutorialPlans.train)
        #expect(try PlanFile.load(path: dir.file("plan.yaml")).image.hasSuffix("knitfab-first-train:v1.0"))
        dir.write("bad.yaml", "image: x\ninputs:\n  - path: rel\n    tags: [\"a:b\"]\n")
        let error = try #require(throws: PlanFileError.self) { try PlanFile.load(path: dir.file("bad.yaml")) }
        #expect(
            error.description
                == "\(dir.file("bad.yaml")):1:8: error: image: \"x\" has no tag (IMAGE:TAG, e.g. train:v1.0)\n\(dir.file("bad.yaml")):3:11: error: inputs[0].path: \"rel\" is not absolute"
        )
        #expect(throws: PlanFileError.self) { try PlanFile.load(path: dir.file("missing.yaml")) }
    }
}

// Plan files of Knitfab's getting-started tutorial, copied verbatim from its text (the templates
// `knit plan template` printed, and the files after the tutorial's corrections).
// Only change: the tutorial page glues a second copy of the corrected training plan onto the first
// ("memory: 1Gi# image:"); the file it means is the first copy.
enum TutorialPlans {
    static let trainTemplate = #"""


        # annotations (optional, mutable):
        #   Set Annotations of this Plan in list of "key=value" format string.
        #   You can use this for your own purpose, for example documentation. This does not affect lineage tracking.
        #   Knitfab Extensions may refer this.
        annotations: []
        #   - "key=value"
        #   - "description=This is a Plan for ..."


        # image:
        #   Container image to be executed as this Plan.
        #   This image-tag should be accessible from your knitfab cluster.
        image: "${YOUR_KNITFAB_NODE}:${PORT}/knitfab-first-train:v1.0"

        # entrypoint:
        #   Command to be executed as this Plan image.
        #   This array overrides the ENTRYPOINT of the image.
        entrypoint: ["python", "-u", "train.py"]

        # args:
        #   Arguments to be passed to this Plan image.
        #   This array overrides the CMD of the image.
        args: ["--dataset", "/in/dataset", "--save-to", "/out/model"]

        # inputs:
        #   List of filepath and Tags as Input of this Plans.
        #   1 or more Inputs are needed.
        #   Each filepath should be absolute. Tags should be formatted in "key:value"-style.
        inputs:
          - path: "/in/dataset"
            tags:
              - "type:dataset"

        # outputs:
        #   List of filepathes and Tags as Output of this Plans.
        #   See "inputs" for detail.
        outputs:
          - path: "/out/model"
            tags:
              - "type:model"

        # log (optional):
        #   Set Tags stored log (STDOUT+STDERR of runs of this Plan) as Data.
        #   If missing or null, log would not be stored.
        log:
          tags:
            - "type:log"

        # active (optional, mutable):
        #   To suspend executing Runs by this Plan, set false explicitly.
        #   If missing or null, it is assumed as true.
        active: true

        # resource (optional, mutable):
        # Specify the resource , cpu or memory for example, requirements for this Plan.
        # This value can be changed after the Plan is applied.

        # There can be other resources. For them, ask your administrator.

        # (advanced note: These values are passed to container.resource.limits in kubernetes.)
        resources:

          # cpu (optional; default = 1):
          #   Specify the CPU resource requirements for this Plan.
          #   This value means "how many cores" the plan will use.
          #   This can be a fraction, like "0.5" or "500m" (= 500 millicore) for a half of a core.
          cpu: 1

          # memory (optional; default = 1Gi):
          #   Specify the memory resource requirements for this Plan.
          #   This value means "how many bytes" the plan will use.
          #   You can use suffixes like "Ki", "Mi", "Gi" for kibi-(1024), mebi-(1024^2), gibi-(1024^3) bytes, case sensitive.
          #   For example, "1Gi" means 1 gibibyte.
          #   If you omit the suffix, it is assumed as bytes.
          memory: 1Gi


        # # on_node (optional):
        # #   Specify the node where this Plan is executed.
        # #
        # #   For each level (may, prefer and must), you can put node labels or taints in "key=value" format.
        # #   Labels show a node characteristic, and taints show a node restriction.
        # #   Ask your administrator for the available labels/taints.
        # #
        # #   By default (= empty), this plan is executed on any node, if the node does not taint.
        # on_node:
        #   # may: (optional)
        #   #   Allow to execute this plan on nodes with these taints, put here.
        #   may:
        #     - "label-a=value1"
        #     - "label-b=value2"
        #
        #   # prefer: (optional)
        #   #   Execute this plan on nodes with these labels & taints, if possible.
        #   prefer:
        #     - "vram=large"
        #
        #   # must: (optional)
        #   #   Always execute this plan on nodes with these labels & taints
        #   #   (taints on node can be subset of this list).
        #   #
        #   #   If no node matches, runs of the plan will be scheduled but not started.
        #   must:
        #     - "accelarator=gpu"
        #
        # # service_account (optional, mutable):
        # #   Specify the service account to run this Plan.
        # #   If missing or null, the service account is not used.
        # service_account: "default"
        """#

    static let train = #"""
        # image:
        #   Container image to be executed as this Plan.
        #   This image-tag should be accessible from your knitfab cluster.
        image: "localhost:${PORT}/knitfab-first-train:v1.0"

        # entrypoint:
        #   Command to be executed as this Plan image.
        #   This array overrides the ENTRYPOINT of the image.
        entrypoint: ["python", "-u", "train.py"]

        # args:
        #   Arguments to be passed to this Plan image.
        #   This array overrides the CMD of the image.
        args: ["--dataset", "/in/dataset", "--save-to", "/out/model"]

        # inputs:
        #   List of filepath and Tags as Input of this Plans.
        #   1 or more Inputs are needed.
        #   Each filepath should be absolute. Tags should be formatted in "key:value"-style.
        inputs:
          - path: "/in/dataset"
            tags:
              - "project:first-knitfab"
              - "type:dataset"
              - "mode:training"

        # outputs:
        #   List of filepathes and Tags as Output of this Plans.
        #   See "inputs" for detail.
        outputs:
          - path: "/out/model"
            tags:
              - "project:first-knitfab"
              - "type:model"
              - "description: 2 layer CNN + 2 layer Affine"

        # log (optional):
        #   Set Tags stored log (STDOUT+STDERR of runs of this Plan) as Data.
        #   If missing or null, log would not be stored.
        log:
          tags:
            - "project:first-knitfab"
            - "type:log"

        # active (optional, mutable):
        #   To suspend executing Runs by this Plan, set false explicitly.
        #   If missing or null, it is assumed as true.
        active: true

        # resource (optional, mutable):
        # Specify the resource , cpu or memory for example, requirements for this Plan.
        # This value can be changed after the Plan is applied.

        # There can be other resources. For them, ask your administrator.

        # (advanced note: These values are passed to container.resource.limits in kubernetes.)
        resources:

          # cpu (optional; default = 1):
          #   Specify the CPU resource requirements for this Plan.
          #   This value means "how many cores" the plan will use.
          #   This can be a fraction, like "0.5" or "500m" (= 500 millicore) for a half of a core.
          cpu: 1

          # memory (optional; default = 1Gi):
          #   Specify the memory resource requirements for this Plan.
          #   This value means "how many bytes" the plan will use.
          #   You can use suffixes like "Ki", "Mi", "Gi" for kibi-(1024), mebi-(1024^2), gibi-(1024^3) bytes, case sensitive.
          #   For example, "1Gi" means 1 gibibyte.
          #   If you omit the suffix, it is assumed as bytes.
          memory: 1Gi
        """#

    static let validationTemplate = #"""


        # annotations (optional, mutable):
        #   Set Annotations of this Plan in list of "key=value" format string.
        #   You can use this for your own purpose, for example documentation. This does not affect lineage tracking.
        #   Knitfab Extensions may refer this.
        annotations: []
        #   - "key=value"
        #   - "description=This is a Plan for ..."


        # image:
        #   Container image to be executed as this Plan.
        #   This image-tag should be accessible from your knitfab cluster.
        image: "${YOUR_KNITFAB_NODE}:${PORT}/knitfab-first-validation:v1.0"

        # entrypoint:
        #   Command to be executed as this Plan image.
        #   This array overrides the ENTRYPOINT of the image.
        entrypoint: ["python", "-u", "validation.py", "--dataset", "/in/dataset", "--model", "/in/model/model.pth"]

        # args:
        #   Arguments to be passed to this Plan image.
        #   This array overrides the CMD of the image.
        args: []

        # inputs:
        #   List of filepath and Tags as Input of this Plans.
        #   1 or more Inputs are needed.
        #   Each filepath should be absolute. Tags should be formatted in "key:value"-style.
        inputs:
          - path: "/in/dataset"
            tags:
              - "type:dataset"
          - path: "/in/model/model.pth"
            tags:
              - "type:model.pth"

        # outputs:
        #   List of filepathes and Tags as Output of this Plans.
        #   See "inputs" for detail.
        outputs: []

        # log (optional):
        #   Set Tags stored log (STDOUT+STDERR of runs of this Plan) as Data.
        #   If missing or null, log would not be stored.
        log:
          tags:
            - "type:log"

        # active (optional, mutable):
        #   To suspend executing Runs by this Plan, set false explicitly.
        #   If missing or null, it is assumed as true.
        active: true

        # resource (optional, mutable):
        # Specify the resource , cpu or memory for example, requirements for this Plan.
        # This value can be changed after the Plan is applied.

        # There can be other resources. For them, ask your administrator.

        # (advanced note: These values are passed to container.resource.limits in kubernetes.)
        resources:

          # cpu (optional; default = 1):
          #   Specify the CPU resource requirements for this Plan.
          #   This value means "how many cores" the plan will use.
          #   This can be a fraction, like "0.5" or "500m" (= 500 millicore) for a half of a core.
          cpu: 1

          # memory (optional; default = 1Gi):
          #   Specify the memory resource requirements for this Plan.
          #   This value means "how many bytes" the plan will use.
          #   You can use suffixes like "Ki", "Mi", "Gi" for kibi-(1024), mebi-(1024^2), gibi-(1024^3) bytes, case sensitive.
          #   For example, "1Gi" means 1 gibibyte.
          #   If you omit the suffix, it is assumed as bytes.
          memory: 1Gi


        # # on_node (optional):
        # #   Specify the node where this Plan is executed.
        # #
        # #   For each level (may, prefer and must), you can put node labels or taints in "key=value" format.
        # #   Labels show a node characteristic, and taints show a node restriction.
        # #   Ask your administrator for the available labels/taints.
        # #
        # #   By default (= empty), this plan is executed on any node, if the node does not taint.
        # on_node:
        #   # may: (optional)
        #   #   Allow to execute this plan on nodes with these taints, put here.
        #   may:
        #     - "label-a=value1"
        #     - "label-b=value2"
        #
        #   # prefer: (optional)
        #   #   Execute this plan on nodes with these labels & taints, if possible.
        #   prefer:
        #     - "vram=large"
        #
        #   # must: (optional)
        #   #   Always execute this plan on nodes with these labels & taints
        #   #   (taints on node can be subset of this list).
        #   #
        #   #   If no node matches, runs of the plan will be scheduled but not started.
        #   must:
        #     - "accelarator=gpu"
        #
        # # service_account (optional, mutable):
        # #   Specify the service account to run this Plan.
        # #   If missing or null, the service account is not used.
        # service_account: "default"
        """#

    static let validation = #"""
        # image:
        #   Container image to be executed as this Plan.
        #   This image-tag should be accessible from your knitfab cluster.
        image: "localhost:${PORT}/knitfab-first-validation:v1.0"

        # entrypoint:
        #   Command to be executed as this Plan image.
        #   This array overrides the ENTRYPOINT of the image.
        entrypoint: ["python", "-u", "validation.py", "--dataset", "/in/dataset", "--model", "/in/model/model.pth"]

        # args:
        #   Arguments to be passed to this Plan image.
        #   This array overrides the CMD of the image.
        args: []

        # inputs:
        #   List of filepath and Tags as Input of this Plans.
        #   1 or more Inputs are needed.
        #   Each filepath should be absolute. Tags should be formatted in "key:value"-style.
        inputs:
          - path: "/in/dataset"
            tags:
              - "type:dataset"
              - "mode:test"
              - "project:first-knitfab"
          - path: "/in/model"
            tags:
              - "type:model"
              - "project:first-knitfab"

        # outputs:
        #   List of filepathes and Tags as Output of this Plans.
        #   See "inputs" for detail.
        outputs: []

        # log (optional):
        #   Set Tags stored log (STDOUT+STDERR of runs of this Plan) as Data.
        #   If missing or null, log would not be stored.
        log:
          tags:
            - "type:log"
            - "project:first-knitfab"
            - "type:validation"

        # active (optional, mutable):
        #   To suspend executing Runs by this Plan, set false explicitly.
        #   If missing or null, it is assumed as true.
        active: true

        # resource (optional, mutable):
        # Specify the resource , cpu or memory for example, requirements for this Plan.
        # This value can be changed after the Plan is applied.

        # There can be other resources. For them, ask your administrator.

        # (advanced note: These values are passed to container.resource.limits in kubernetes.)
        resources:

          # cpu (optional; default = 1):
          #   Specify the CPU resource requirements for this Plan.
          #   This value means "how many cores" the plan will use.
          #   This can be a fraction, like "0.5" or "500m" (= 500 millicore) for a half of a core.
          cpu: 1

          # memory (optional; default = 1Gi):
          #   Specify the memory resource requirements for this Plan.
          #   This value means "how many bytes" the plan will use.
          #   You can use suffixes like "Ki", "Mi", "Gi" for kibi-(1024), mebi-(1024^2), gibi-(1024^3) bytes, case sensitive.
          #   For example, "1Gi" means 1 gibibyte.
          #   If you omit the suffix, it is assumed as bytes.
          memory: 1Gi
        """#
}
