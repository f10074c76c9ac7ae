/** The deadline-bounded polling helper, shared with the local-cluster launcher. */
export * from "../../services/shared/wait-for.js";
