/// Names of the built-in pseudo plans.
public enum PseudoPlan {
    public static let uploaded = "knit#uploaded"
    public static let uploadPath = "/upload"
}
