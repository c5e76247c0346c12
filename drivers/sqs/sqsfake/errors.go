package sqsfake

import "fmt"

// apiError is an error reply in the shape SQS sends over the AWS JSON 1.0 protocol: an HTTP status,
// a JSON body {"__type": "com.amazonaws.sqs#<Type>", "message": ...} and the query-compatible code
// in the x-amzn-query-error header ("<code>;Sender"), which the SDK reports as the error code.
type apiError struct {
	status int
	// typ is the shape name of the error (the part after '#' in __type).
	typ string
	// code is the query-compatible error code (AWS.SimpleQueueService.NonExistentQueue ...).
	code string
	// sender is true for client faults ("Sender"), false for server faults ("Receiver").
	sender bool
	msg    string
}

func (e *apiError) Error() string { return e.code + ": " + e.msg }

func clientErr(typ, code, format string, args ...any) *apiError {
	return &apiError{status: 400, typ: typ, code: code, sender: true, msg: fmt.Sprintf(format, args...)}
}

// Modelled errors keep the shape name as __type and the awsQueryError code from the SQS model.

func errNonExistentQueue() *apiError {
	return clientErr("QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue", "The specified queue does not exist.")
}

func errQueueNameExists(attr string) *apiError {
	return clientErr("QueueNameExists", "QueueAlreadyExists",
		"A queue already exists with the same name and a different value for attribute %s", attr)
}

func errQueueDeletedRecently(name string) *apiError {
	return clientErr("QueueDeletedRecently", "AWS.SimpleQueueService.QueueDeletedRecently",
		"You must wait 60 seconds after deleting a queue before you can create another with the same name (%s).", name)
}

func errReceiptHandleIsInvalid(handle string) *apiError {
	return clientErr("ReceiptHandleIsInvalid", "ReceiptHandleIsInvalid",
		"The input receipt handle %q is not a valid receipt handle.", handle)
}

func errMessageNotInflight() *apiError {
	return clientErr("MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight",
		"The message referred to isn't in flight.")
}

func errInvalidAttributeName(name string) *apiError {
	return clientErr("InvalidAttributeName", "InvalidAttributeName", "Unknown Attribute %s.", name)
}

func errInvalidAttributeValue(name, value string) *apiError {
	return clientErr("InvalidAttributeValue", "InvalidAttributeValue", "Invalid value for the parameter %s: %q.", name, value)
}

func errInvalidMessageContents(format string, args ...any) *apiError {
	return clientErr("InvalidMessageContents", "InvalidMessageContents", format, args...)
}

func errPurgeInProgress(name string) *apiError {
	return clientErr("PurgeQueueInProgress", "AWS.SimpleQueueService.PurgeQueueInProgress",
		"Only one PurgeQueue operation on %s is allowed every 60 seconds.", name)
}

func errEmptyBatch() *apiError {
	return clientErr("EmptyBatchRequest", "AWS.SimpleQueueService.EmptyBatchRequest",
		"There should be at least one entry in the request.")
}

func errTooManyEntries(n int) *apiError {
	return clientErr("TooManyEntriesInBatchRequest", "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
		"Maximum number of entries per request are 10. You have sent %d.", n)
}

func errIdsNotDistinct(id string) *apiError {
	return clientErr("BatchEntryIdsNotDistinct", "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
		"Id %s repeated.", id)
}

func errInvalidBatchEntryID(id string) *apiError {
	return clientErr("InvalidBatchEntryId", "AWS.SimpleQueueService.InvalidBatchEntryId",
		"A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long. Got %q.", id)
}

func errBatchTooLong(size, limit int) *apiError {
	return clientErr("BatchRequestTooLong", "AWS.SimpleQueueService.BatchRequestTooLong",
		"Batch requests cannot be longer than %d bytes. You have sent %d bytes.", limit, size)
}

func errUnsupportedOperation(action string) *apiError {
	return clientErr("UnsupportedOperation", "AWS.SimpleQueueService.UnsupportedOperation",
		"The fake SQS server does not implement %s.", action)
}

// Errors without a model shape: the SDK reports them as smithy.GenericAPIError with the query code.

func errInvalidParameterValue(format string, args ...any) *apiError {
	return clientErr("InvalidParameterValue", "InvalidParameterValue", format, args...)
}

func errMissingParameter(name string) *apiError {
	return clientErr("MissingParameter", "MissingParameter", "The request must contain the parameter %s.", name)
}

func errSerialization(err error) *apiError {
	return &apiError{status: 400, typ: "SerializationException", code: "SerializationException", sender: true,
		msg: "Failed to decode the request: " + err.Error()}
}

func errUnknownOperation(target string) *apiError {
	return &apiError{status: 400, typ: "UnknownOperationException", code: "InvalidAction", sender: true,
		msg: fmt.Sprintf("The action or operation requested is invalid (X-Amz-Target %q).", target)}
}

func errInternal(action string) *apiError {
	return &apiError{status: 500, typ: "InternalError", code: "InternalError", sender: false,
		msg: "We encountered an internal error (injected by sqsfake for " + action + "). Please try again."}
}

func errUnavailable() *apiError {
	return &apiError{status: 503, typ: "ServiceUnavailable", code: "ServiceUnavailable", sender: false,
		msg: "The request has failed due to a temporary failure of the server (sqsfake is unavailable)."}
}
